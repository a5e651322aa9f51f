#!/usr/bin/env python3
"""Writes the reference renderings <model>.agp<0|1>.txt that chat's tests compare
against byte for byte. It renders each <model>.tokenizer_config.json's chat_template
over conversation.json the way Hugging Face transformers' apply_chat_template does:
jinja2's ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and
the loopcontrols extension, a raise_exception global, its own tojson filter, and the config's special tokens
(bos_token, eos_token, ...) as variables. Run it from this directory with jinja2 3.1.x.
"""
import json
import random
import sys

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODELS = ["Meta-Llama-3-8B-Instruct", "Llama-2-7b-chat-hf"]


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson (which sorts keys and escapes HTML) with this.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = tojson
    messages = json.load(open("conversation.json"))
    for model in MODELS:
        cfg = json.load(open(model + ".tokenizer_config.json"))
        tokens = {k: v for k, v in cfg.items() if k.endswith("_token")}
        template = env.from_string(cfg["chat_template"])
        for agp in (False, True):
            out = template.render(messages=messages, add_generation_prompt=agp, **tokens)
            with open("%s.agp%d.txt" % (model, agp), "w", newline="") as f:
                f.write(out)
            print(model, "add_generation_prompt=%s" % agp, repr(out))
    features(env, messages)
    whitespace(env)
    print("jinja2", jinja2.__version__, file=sys.stderr)


# Small templates that exercise what published chat templates rely on; the
# expected outputs (or errors) go to features.json.
FEATURES = {
    "loop-controls": "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                     "{% if loop.index > 3 %}{% break %}{% endif %}[{{ loop.index }}/{{ loop.length }} {{ m.role }}"
                     "{% if not loop.first %} after {{ loop.previtem.role }}{% endif %}{% if loop.last %} last{% endif %}]{% endfor %}",
    "trim-lstrip-blocks": "<start>\n  {% for m in messages %}\n    {% if m.role == 'user' %}\n    U: {{ m.content }}\n"
                          "    {% else %}\n    O: {{ m.content }}\n    {% endif %}\n  {% endfor %}\n<end>\n",
    "whitespace-control": "{%- for m in messages -%}\n  {{- m.role -}}\n  {{ ',' if not loop.last }}\n{%- endfor -%}\n  |\n{{- bos_token }}  \n",
    "crlf-and-trailing-newline": "{% for m in messages %}{{ m.role }}\r\n{% endfor %}\r\n",
    "namespace-and-scoping": "{% set found = false %}{% set ns = namespace(n=0) %}{% for m in messages %}{% set found = true %}"
                             "{% set ns.n = ns.n + 1 %}{% endfor %}{{ found }} {{ ns.n }}",
    "defined-and-slices": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% endif %}"
                          "{{ loop_messages|length }} {{ messages[-1].content|trim }} {{ messages[9] is defined }} "
                          "{{ messages[0].tool_calls is defined }} {{ undefined_name }}|{{ add_generation_prompt }}",
    "string-methods": "{{ messages[1].content.strip().upper() }}|{{ messages[0].content.split('\\n')[1] }}|"
                      "{{ messages[1].content.startswith('What') }}|{{ messages[2].content.replace('Paris', 'PARIS')|trim }}|{{ 'a' ~ 1 }}",
    "macro": "{% macro turn(m, sep='|') %}{{ m.role }}{{ sep }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}{{ turn(messages[0], sep='!') }}",
    "tojson-order": "{{ messages[0]|tojson }}",
    "raise-exception": "{% if messages|length > 1 %}{{ raise_exception('Only one message, please') }}{% endif %}ok",
    "generation-prompt": "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}{{ eos_token }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}",
}


def features(env, messages):
    out = []
    for name, src in FEATURES.items():
        for agp in (False, True):
            case = {"name": name, "template": src, "add_generation_prompt": agp,
                    "bos_token": "<s>", "eos_token": "</s>"}
            try:
                case["want"] = env.from_string(src).render(messages=messages, add_generation_prompt=agp,
                                                           bos_token="<s>", eos_token="</s>")
            except TemplateError as e:
                case["error"] = str(e)
            out.append(case)
    with open("features.json", "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


def whitespace(env, n=400, seed=14):
    """Random templates mixing text with spaces, tabs and newlines and tags with
    every whitespace marker; their jinja2 renderings go to whitespace.json."""
    rng = random.Random(seed)
    texts = ["", " ", "  ", "\n", " \n", "\n  ", "\t\n\t", "a", "a ", " a\n", "\n\n", "x\n  ", "\n \n "]
    marks = [("", ""), ("-", ""), ("", "-"), ("-", "-"), ("+", ""), ("", "+")]

    def tag(kind):
        lm, rm = rng.choice(marks)
        if kind == "var":
            lm, rm = lm.replace("+", ""), rm.replace("+", "")
            return "{{%s 'v' %s}}" % (lm, rm)
        if kind == "comment":
            return "{#%s c %s#}" % (lm, rm)
        return "{%%%s set z = 1 %s%%}" % (lm, rm)

    def seq(depth):
        out = []
        for _ in range(rng.randint(1, 5)):
            out.append(rng.choice(texts))
            r = rng.random()
            if r < 0.2 and depth < 2:
                lm, rm = rng.choice(marks)
                lm2, rm2 = rng.choice(marks)
                if rng.random() < 0.5:
                    out.append("{%%%s for i in [1, 2] %s%%}" % (lm, rm) + seq(depth + 1) + "{%%%s endfor %s%%}" % (lm2, rm2))
                else:
                    out.append("{%%%s if true %s%%}" % (lm, rm) + seq(depth + 1) + "{%%%s endif %s%%}" % (lm2, rm2))
            else:
                out.append(tag(rng.choice(["var", "var", "block", "comment"])))
        out.append(rng.choice(texts))
        return "".join(out)

    cases = []
    for _ in range(n):
        src = seq(0)
        cases.append({"template": src, "want": env.from_string(src).render()})
    raw = "a\n  {% raw %}\n{{ not a tag }} {%- x %}\n{% endraw %}\n  b {{- 'c' }}"
    cases.append({"template": raw, "want": env.from_string(raw).render()})
    with open("whitespace.json", "w") as f:
        json.dump(cases, f, indent=0, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
