// sampler_ref.c: the sampling functions of karpathy/llama2.c run.c (MIT
// licence), transcribed verbatim, wrapped in a driver that prints the tokens
// sampled from a file of logit rows. sampler_test.go -update compiles it with
// the system C compiler and stores its output as the golden files.
//
// usage: sampler_ref ROWS.f32 VOCAB TEMP TOPP SEED [TEMP TOPP SEED ...]
// Prints one line per configuration: "TEMP TOPP SEED: tok tok ...".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex* probindex;
    float temperature;
    float topp;
    unsigned long long rng_state;
} Sampler;

void softmax(float* x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) {
        if (x[i] > max_val) {
            max_val = x[i];
        }
    }
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < size; i++) {
        x[i] /= sum;
    }
}

int sample_argmax(float* probabilities, int n) {
    int max_i = 0;
    float max_p = probabilities[0];
    for (int i = 1; i < n; i++) {
        if (probabilities[i] > max_p) {
            max_i = i;
            max_p = probabilities[i];
        }
    }
    return max_i;
}

int sample_mult(float* probabilities, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probabilities[i];
        if (coin < cdf) {
            return i;
        }
    }
    return n - 1;
}

int compare(const void* a, const void* b) {
    ProbIndex* a_ = (ProbIndex*) a;
    ProbIndex* b_ = (ProbIndex*) b;
    if (a_->prob > b_->prob) return -1;
    if (a_->prob < b_->prob) return 1;
    return 0;
}

int sample_topp(float* probabilities, int n, float topp, ProbIndex* probindex, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (n - 1);
    for (int i = 0; i < n; i++) {
        if (probabilities[i] >= cutoff) {
            probindex[n0].index = i;
            probindex[n0].prob = probabilities[i];
            n0++;
        }
    }
    qsort(probindex, n0, sizeof(ProbIndex), compare);
    float cumulative_prob = 0.0f;
    int last_idx = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative_prob += probindex[i].prob;
        if (cumulative_prob > topp) {
            last_idx = i;
            break;
        }
    }
    float r = coin * cumulative_prob;
    float cdf = 0.0f;
    for (int i = 0; i <= last_idx; i++) {
        cdf += probindex[i].prob;
        if (r < cdf) {
            return probindex[i].index;
        }
    }
    return probindex[last_idx].index;
}

unsigned int random_u32(unsigned long long *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (*state * 0x2545F4914F6CDD1Dull) >> 32;
}

float random_f32(unsigned long long *state) {
    return (random_u32(state) >> 8) / 16777216.0f;
}

int sample(Sampler* sampler, float* logits) {
    int next;
    if (sampler->temperature == 0.0f) {
        next = sample_argmax(logits, sampler->vocab_size);
    } else {
        for (int q=0; q<sampler->vocab_size; q++) { logits[q] /= sampler->temperature; }
        softmax(logits, sampler->vocab_size);
        float coin = random_f32(&sampler->rng_state);
        if (sampler->topp <= 0 || sampler->topp >= 1) {
            next = sample_mult(logits, sampler->vocab_size, coin);
        } else {
            next = sample_topp(logits, sampler->vocab_size, sampler->topp, sampler->probindex, coin);
        }
    }
    return next;
}

int main(int argc, char** argv) {
    if (argc < 6 || (argc - 3) % 3 != 0) {
        fprintf(stderr, "usage: %s ROWS.f32 VOCAB TEMP TOPP SEED [...]\n", argv[0]);
        return 2;
    }
    int vocab = atoi(argv[2]);
    FILE* f = fopen(argv[1], "rb");
    if (!f || vocab <= 0) { fprintf(stderr, "cannot read %s\n", argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int rows = (int)(size / (4L * vocab));
    float* all = malloc(size);
    if (fread(all, 4, (size_t)rows * vocab, f) != (size_t)rows * vocab) { return 1; }
    fclose(f);
    float* row = malloc(4L * vocab);
    for (int c = 3; c + 2 < argc; c += 3) {
        Sampler s;
        s.vocab_size = vocab;
        s.temperature = (float)atof(argv[c]);
        s.topp = (float)atof(argv[c + 1]);
        s.rng_state = strtoull(argv[c + 2], NULL, 10);
        s.probindex = malloc(sizeof(ProbIndex) * vocab);
        printf("%s %s %s:", argv[c], argv[c + 1], argv[c + 2]);
        for (int r = 0; r < rows; r++) {
            memcpy(row, all + (size_t)r * vocab, 4L * vocab);
            printf(" %d", sample(&s, row));
        }
        printf("\n");
        free(s.probindex);
    }
    return 0;
}
