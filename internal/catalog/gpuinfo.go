package catalog

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// GPUMemoryMiB reads the per-GPU memory from a GpuInfo field. The field is
// empty, a bare accelerator name (e.g. "A100-80GB", "tpu-v2-8"), or a
// Python-literal dict such as
//
//	{'Gpus': [{'Name': 'A10G', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 22888}}], 'TotalGpuMemoryInMiB': 22888}
//
// of which Gpus[0].MemoryInfo.SizeInMiB is the answer. It returns 0 when the
// field says nothing about memory, and an error when it looks like a dict or
// list but is not a well-formed one of that shape.
func GPUMemoryMiB(field string) (int64, error) {
	s := strings.TrimSpace(field)
	if s == "" {
		return 0, nil
	}
	if !strings.ContainsAny(s[:1], "{[(") {
		if strings.ContainsAny(s, "{}[]()'\"\\") || !utf8.ValidString(s) {
			return 0, fmt.Errorf("neither an accelerator name nor a dict: %s", clip(s))
		}
		return 0, nil
	}
	v, err := parseLiteral(s)
	if err != nil {
		return 0, fmt.Errorf("not a Python-literal dict (%v): %s", err, clip(s))
	}
	d, ok := v.(map[string]any)
	if !ok {
		return 0, fmt.Errorf("a %s, not a dict: %s", typeName(v), clip(s))
	}
	gpus, ok := d["Gpus"]
	if !ok || gpus == nil {
		return 0, nil
	}
	list, ok := gpus.([]any)
	if !ok {
		return 0, fmt.Errorf("Gpus is a %s, not a list: %s", typeName(gpus), clip(s))
	}
	if len(list) == 0 {
		return 0, nil
	}
	gpu, ok := list[0].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("Gpus[0] is a %s, not a dict: %s", typeName(list[0]), clip(s))
	}
	mi, ok := gpu["MemoryInfo"]
	if !ok || mi == nil {
		return 0, nil
	}
	mem, ok := mi.(map[string]any)
	if !ok {
		return 0, fmt.Errorf("Gpus[0].MemoryInfo is a %s, not a dict: %s", typeName(mi), clip(s))
	}
	size, ok := mem["SizeInMiB"]
	if !ok || size == nil {
		return 0, nil
	}
	f, ok := size.(float64)
	if !ok || f < 0 || f > 1<<40 || math.IsNaN(f) {
		return 0, fmt.Errorf("Gpus[0].MemoryInfo.SizeInMiB is not a size in MiB: %s", clip(s))
	}
	return int64(math.Round(f)), nil
}

func clip(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "dict"
	case []any:
		return "list"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "None"
	}
	return fmt.Sprintf("%T", v)
}

// maxLiteralDepth bounds the nesting of a literal (GpuInfo needs 4).
const maxLiteralDepth = 16

// parseLiteral parses a Python literal of dicts (string keys), lists,
// tuples (as lists), strings (single or double quoted), numbers, True,
// False and None. It is a small parser, not an evaluator: anything else is
// an error, and no input makes it panic.
func parseLiteral(s string) (any, error) {
	p := &litParser{s: s}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected %q after the value at offset %d", p.s[p.i], p.i)
	}
	return v, nil
}

type litParser struct {
	s string
	i int
}

var errEnd = errors.New("unexpected end")

func (p *litParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *litParser) value(depth int) (any, error) {
	if depth > maxLiteralDepth {
		return nil, errors.New("nested too deeply")
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errEnd
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.dict(depth)
	case c == '[':
		return p.list(depth, ']')
	case c == '(':
		return p.list(depth, ')')
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, w := range []struct {
			word string
			v    any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], w.word) {
				p.i += len(w.word)
				return w.v, nil
			}
		}
		return nil, fmt.Errorf("unexpected %q at offset %d", c, p.i)
	}
}

func (p *litParser) dict(depth int) (any, error) {
	p.i++ // {
	m := map[string]any{}
	for {
		p.space()
		if p.i >= len(p.s) {
			return nil, errEnd
		}
		if p.s[p.i] == '}' {
			p.i++
			return m, nil
		}
		k, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("dict key is a %s, not a string, at offset %d", typeName(k), p.i)
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, fmt.Errorf("missing ':' after key %q", ks)
		}
		p.i++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[ks] = v
		if err := p.sep('}'); err != nil {
			return nil, err
		}
	}
}

func (p *litParser) list(depth int, end byte) (any, error) {
	p.i++ // [ or (
	out := []any{}
	for {
		p.space()
		if p.i >= len(p.s) {
			return nil, errEnd
		}
		if p.s[p.i] == end {
			p.i++
			return out, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if err := p.sep(end); err != nil {
			return nil, err
		}
	}
}

// sep consumes the ',' after an element, or leaves the closing end for the caller.
func (p *litParser) sep(end byte) error {
	p.space()
	if p.i >= len(p.s) {
		return errEnd
	}
	switch p.s[p.i] {
	case ',':
		p.i++
		return nil
	case end:
		return nil
	}
	return fmt.Errorf("expected ',' or %q at offset %d, got %q", end, p.i, p.s[p.i])
}

func (p *litParser) str() (any, error) {
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return nil, errEnd
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(e)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case c == '\n':
			return nil, errors.New("line break inside a string")
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return nil, errors.New("unterminated string")
}

func (p *litParser) number() (any, error) {
	start := p.i
	for p.i < len(p.s) && strings.IndexByte("0123456789+-.eE_", p.s[p.i]) >= 0 {
		p.i++
	}
	tok := strings.ReplaceAll(p.s[start:p.i], "_", "")
	f, err := strconv.ParseFloat(tok, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("bad number %q at offset %d", p.s[start:p.i], start)
	}
	return f, nil
}
