package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"offload/chat"
)

// The request and response shapes of the OpenAI API that clients use. Only
// what the server honours is decoded; fields it cannot honour are refused
// with a 400 when they would change the answer (n > 1, logprobs, tools),
// and ignored when they do not (user, metadata, store...).

// apiError is the OpenAI error body: {"error": {...}}.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

// requestError is a client error: the status and the OpenAI error body.
type requestError struct {
	status int
	body   apiError
}

func (e *requestError) Error() string { return e.body.Message }

func badRequest(param, format string, args ...any) *requestError {
	e := &requestError{status: 400, body: apiError{Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}}
	if param != "" {
		e.body.Param = &param
	}
	return e
}

func (e *requestError) withCode(code string) *requestError {
	e.body.Code = &code
	return e
}

// sampling are the generation fields common to both endpoints.
type sampling struct {
	Model               string          `json:"model"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int64          `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Logprobs         json.RawMessage `json:"logprobs"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	LogitBias        map[string]any  `json:"logit_bias"`
	BestOf           *int64          `json:"best_of"`
}

type chatRequest struct {
	sampling
	Messages       []chatMessage   `json:"messages"`
	Tools          json.RawMessage `json:"tools"`
	Functions      json.RawMessage `json:"functions"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

type chatMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls"`
}

type completionRequest struct {
	sampling
	Prompt json.RawMessage `json:"prompt"`
	Echo   bool            `json:"echo"`
	Suffix *string         `json:"suffix"`
}

// params are the validated generation settings.
type params struct {
	maxTokens    int // 0: the rest of the context
	temperature  float64
	topP         float64
	seed         *int64
	stops        []string
	stream       bool
	includeUsage bool
}

func (s *sampling) validate() (params, *requestError) {
	p := params{temperature: 1, topP: 1, stream: s.Stream, seed: s.Seed}
	if s.N != nil && *s.N != 1 {
		return p, badRequest("n", "n must be 1: this server generates one choice per request")
	}
	if s.BestOf != nil && *s.BestOf != 1 {
		return p, badRequest("best_of", "best_of must be 1")
	}
	if len(s.Logprobs) > 0 && !isJSON(s.Logprobs, "null", "false", "0") {
		return p, badRequest("logprobs", "logprobs are not supported")
	}
	if s.PresencePenalty != nil && *s.PresencePenalty != 0 {
		return p, badRequest("presence_penalty", "presence_penalty is not supported (only 0)")
	}
	if s.FrequencyPenalty != nil && *s.FrequencyPenalty != 0 {
		return p, badRequest("frequency_penalty", "frequency_penalty is not supported (only 0)")
	}
	if len(s.LogitBias) > 0 {
		return p, badRequest("logit_bias", "logit_bias is not supported")
	}
	mt, param := s.MaxTokens, "max_tokens"
	if s.MaxCompletionTokens != nil {
		mt, param = s.MaxCompletionTokens, "max_completion_tokens"
	}
	if mt != nil {
		if *mt < 1 {
			return p, badRequest(param, "%s must be at least 1, got %d", param, *mt)
		}
		p.maxTokens = int(min(*mt, math.MaxInt32))
	}
	if s.Temperature != nil {
		if t := *s.Temperature; math.IsNaN(t) || t < 0 || t > 2 {
			return p, badRequest("temperature", "temperature must be between 0 and 2, got %v", t)
		}
		p.temperature = *s.Temperature
	}
	if s.TopP != nil {
		if t := *s.TopP; math.IsNaN(t) || t <= 0 || t > 1 {
			return p, badRequest("top_p", "top_p must be in (0, 1], got %v", t)
		}
		p.topP = *s.TopP
	}
	stops, err := parseStop(s.Stop)
	if err != nil {
		return p, err
	}
	p.stops = stops
	if s.StreamOptions != nil {
		if !s.Stream {
			return p, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = s.StreamOptions.IncludeUsage
	}
	return p, nil
}

func isJSON(raw json.RawMessage, values ...string) bool {
	t := string(bytes.TrimSpace(raw))
	for _, v := range values {
		if t == v {
			return true
		}
	}
	return false
}

// maxStops and maxStopBytes follow the OpenAI limits.
const (
	maxStops     = 4
	maxStopBytes = 1024
)

// parseStop reads "stop": null, a string or up to 4 strings.
func parseStop(raw json.RawMessage) ([]string, *requestError) {
	if len(raw) == 0 || isJSON(raw, "null") {
		return nil, nil
	}
	var one string
	var list []string
	if err := json.Unmarshal(raw, &one); err == nil {
		list = []string{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop must be a string or an array of strings")
	}
	if len(list) > maxStops {
		return nil, badRequest("stop", "stop has %d strings; at most %d are allowed", len(list), maxStops)
	}
	for _, s := range list {
		if s == "" {
			return nil, badRequest("stop", "stop strings must not be empty")
		}
		if len(s) > maxStopBytes {
			return nil, badRequest("stop", "a stop string is over %d bytes", maxStopBytes)
		}
	}
	return list, nil
}

// messages converts and checks the chat messages.
func (r *chatRequest) messages() ([]chat.Message, *requestError) {
	if len(r.Tools) > 0 && !isJSON(r.Tools, "null", "[]") || len(r.Functions) > 0 && !isJSON(r.Functions, "null", "[]") {
		return nil, badRequest("tools", "tools and functions are not supported")
	}
	if r.ResponseFormat != nil && r.ResponseFormat.Type != "" && r.ResponseFormat.Type != "text" {
		return nil, badRequest("response_format", "response_format %q is not supported (only \"text\")", r.ResponseFormat.Type)
	}
	if len(r.Messages) == 0 {
		return nil, badRequest("messages", "messages must not be empty")
	}
	out := make([]chat.Message, len(r.Messages))
	for i, m := range r.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system" // the newer name of the system role
		case "tool", "function":
			return nil, badRequest(param+".role", "role %q is not supported: this server does not call tools", role)
		default:
			return nil, badRequest(param+".role", "role must be system, user or assistant, got %q", m.Role)
		}
		if len(m.ToolCalls) > 0 && !isJSON(m.ToolCalls, "null", "[]") {
			return nil, badRequest(param+".tool_calls", "tool calls are not supported")
		}
		text, err := messageText(m.Content, param+".content")
		if err != nil {
			return nil, err
		}
		out[i] = chat.Message{Role: role, Content: text}
	}
	return out, nil
}

// messageText reads a message's content: a string, or an array of text
// parts.
func messageText(raw json.RawMessage, param string) (string, *requestError) {
	if len(raw) == 0 || isJSON(raw, "null") {
		return "", badRequest(param, "content is missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(param, "content must be a string or an array of content parts")
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", badRequest(fmt.Sprintf("%s[%d]", param, i), "content part type %q is not supported (only text)", p.Type)
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}

// promptInput reads a completion prompt: a string, one string in an
// array, or token ids.
func (r *completionRequest) promptInput() (text string, ids []int, err *requestError) {
	if r.Echo {
		return "", nil, badRequest("echo", "echo is not supported")
	}
	if r.Suffix != nil && *r.Suffix != "" {
		return "", nil, badRequest("suffix", "suffix is not supported")
	}
	if len(r.Prompt) == 0 || isJSON(r.Prompt, "null") {
		return "", nil, badRequest("prompt", "prompt is missing")
	}
	if json.Unmarshal(r.Prompt, &text) == nil {
		return text, nil, nil
	}
	var texts []string
	if json.Unmarshal(r.Prompt, &texts) == nil {
		if len(texts) != 1 {
			return "", nil, badRequest("prompt", "prompt must hold one text; got %d", len(texts))
		}
		return texts[0], nil, nil
	}
	if json.Unmarshal(r.Prompt, &ids) == nil {
		return "", ids, nil
	}
	var batches [][]int
	if json.Unmarshal(r.Prompt, &batches) == nil {
		if len(batches) != 1 {
			return "", nil, badRequest("prompt", "prompt must hold one token list; got %d", len(batches))
		}
		return "", batches[0], nil
	}
	return "", nil, badRequest("prompt", "prompt must be a string, an array of one string, or token ids")
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             *usage       `json:"usage,omitempty"`
	Offload           any          `json:"offload,omitempty"`
}

type chatChoice struct {
	Index        int       `json:"index"`
	Message      *chatOut  `json:"message,omitempty"` // a whole answer
	Delta        *chatOut  `json:"delta,omitempty"`   // a streamed chunk
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatOut struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type textCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []textChoice `json:"choices"`
	Usage             *usage       `json:"usage,omitempty"`
	Offload           any          `json:"offload,omitempty"`
}

type textChoice struct {
	Index        int       `json:"index"`
	Text         string    `json:"text"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}
