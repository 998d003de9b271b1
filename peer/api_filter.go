package peer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// A subset of Consul's ?filter= expression language (go-bexpr), evaluated
// on the JSON shape of each result entry:
//
//	Selector == "v"   Selector != "v"   Selector contains "v"
//	Selector not contains "v"   "v" in Selector   "v" not in Selector
//	Selector is empty   Selector is not empty   Selector matches "re"
//	Selector not matches "re"   and, or, not, parentheses
//
// Selectors are dotted field paths (Service.Meta.version, Checks.Status);
// a map key may also be written Service.Meta["version"]. Field names match
// case-insensitively. A path through a list (Checks.Status) yields every
// element's value: == and matches hold when all of them do (and there is at
// least one), contains and in when any does.

type filterExpr struct {
	op          string // "and", "or", "not", or a match operator
	left, right *filterExpr
	sel         []string
	value       string
}

// maxFilterLen bounds the expression text.
const maxFilterLen = 4096

func filterParam(r *http.Request) (*filterExpr, error) {
	src := r.URL.Query().Get("filter")
	if src == "" {
		return nil, nil
	}
	f, err := parseFilter(src)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "Failed to create boolean expression evaluator: %v", err)
	}
	return f, nil
}

// parseFilter parses an expression.
func parseFilter(src string) (*filterExpr, error) {
	if len(src) > maxFilterLen {
		return nil, fmt.Errorf("filter longer than %d bytes", maxFilterLen)
	}
	toks, err := lexFilter(src)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	return e, nil
}

type filterTok struct {
	text   string
	quoted bool
}

func lexFilter(s string) ([]filterTok, error) {
	var out []filterTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, filterTok{text: string(c)})
			i++
		case c == '"' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c == '"' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, filterTok{text: b.String(), quoted: true})
			i = j + 1
		case c == '=' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				out = append(out, filterTok{text: s[i : i+2]})
				i += 2
				continue
			}
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()\"`=!", rune(s[j])) {
				if s[j] == '[' { // Meta["key"]
					k := strings.IndexByte(s[j:], ']')
					if k < 0 {
						return nil, fmt.Errorf("unterminated [ at %d", j)
					}
					j += k + 1
					continue
				}
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			out = append(out, filterTok{text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

type filterParser struct {
	toks []filterTok
	pos  int
}

func (p *filterParser) peek(word string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].quoted && strings.EqualFold(p.toks[p.pos].text, word)
}

func (p *filterParser) next() (filterTok, error) {
	if p.pos >= len(p.toks) {
		return filterTok{}, fmt.Errorf("unexpected end of expression")
	}
	t := p.toks[p.pos]
	p.pos++
	return t, nil
}

const maxFilterDepth = 64

func (p *filterParser) or(depth int) (*filterExpr, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.peek("or") {
		p.pos++
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &filterExpr{op: "or", left: l, right: r}
	}
	return l, nil
}

func (p *filterParser) and(depth int) (*filterExpr, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.peek("and") {
		p.pos++
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &filterExpr{op: "and", left: l, right: r}
	}
	return l, nil
}

func (p *filterParser) unary(depth int) (*filterExpr, error) {
	if depth > maxFilterDepth {
		return nil, fmt.Errorf("expression nested too deeply")
	}
	if p.peek("not") {
		p.pos++
		e, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &filterExpr{op: "not", left: e}, nil
	}
	if p.peek("(") {
		p.pos++
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return e, nil
	}
	return p.match()
}

func (p *filterParser) match() (*filterExpr, error) {
	first, err := p.next()
	if err != nil {
		return nil, err
	}
	// "value" [not] in Selector
	if p.peek("in") || (p.peek("not") && p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1].text, "in")) {
		op := "in"
		if p.peek("not") {
			op = "not in"
			p.pos++
		}
		p.pos++
		selTok, err := p.next()
		if err != nil {
			return nil, err
		}
		sel, err := parseSelector(selTok.text)
		if err != nil {
			return nil, err
		}
		return &filterExpr{op: op, sel: sel, value: first.text}, nil
	}
	if first.quoted {
		return nil, fmt.Errorf("expected a selector, got string %q", first.text)
	}
	sel, err := parseSelector(first.text)
	if err != nil {
		return nil, err
	}
	opTok, err := p.next()
	if err != nil {
		return nil, err
	}
	op := strings.ToLower(opTok.text)
	switch op {
	case "==", "!=", "contains", "matches":
	case "is":
		op = "is empty"
		if p.peek("not") {
			p.pos++
			op = "is not empty"
		}
		if !p.peek("empty") {
			return nil, fmt.Errorf("expected 'empty' after 'is'")
		}
		p.pos++
		return &filterExpr{op: op, sel: sel}, nil
	case "not":
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		switch strings.ToLower(t.text) {
		case "contains", "matches":
			op = "not " + strings.ToLower(t.text)
		default:
			return nil, fmt.Errorf("unexpected %q after not", t.text)
		}
	default:
		return nil, fmt.Errorf("unknown operator %q", opTok.text)
	}
	v, err := p.next()
	if err != nil {
		return nil, err
	}
	e := &filterExpr{op: op, sel: sel, value: v.text}
	if strings.HasSuffix(op, "matches") {
		if _, err := regexp.Compile(v.text); err != nil {
			return nil, fmt.Errorf("bad regular expression %q: %v", v.text, err)
		}
	}
	return e, nil
}

func parseSelector(s string) ([]string, error) {
	var out []string
	for s != "" {
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			key := strings.Trim(s[1:end], `"'`)
			out = append(out, key)
			s = strings.TrimPrefix(s[end+1:], ".")
			continue
		}
		end := strings.IndexAny(s, ".[")
		part := s
		if end >= 0 {
			part = s[:end]
			s = s[end:]
			s = strings.TrimPrefix(s, ".")
		} else {
			s = ""
		}
		if part == "" {
			return nil, fmt.Errorf("empty selector part")
		}
		for _, r := range part {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' && r != '/' && r != ':' {
				return nil, fmt.Errorf("invalid selector %q", part)
			}
		}
		out = append(out, part)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return out, nil
}

// match evaluates the expression on v's JSON form.
func (f *filterExpr) match(v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return false, err
	}
	return f.eval(doc), nil
}

func (f *filterExpr) eval(doc any) bool {
	switch f.op {
	case "and":
		return f.left.eval(doc) && f.right.eval(doc)
	case "or":
		return f.left.eval(doc) || f.right.eval(doc)
	case "not":
		return !f.left.eval(doc)
	}
	vals, multi := resolve(doc, f.sel)
	switch f.op {
	case "==":
		return allOf(vals, func(x any) bool { return scalarEq(x, f.value) })
	case "!=":
		return !allOf(vals, func(x any) bool { return scalarEq(x, f.value) })
	case "contains", "in":
		return anyOf(vals, func(x any) bool { return containsVal(x, f.value, multi) })
	case "not contains", "not in":
		return !anyOf(vals, func(x any) bool { return containsVal(x, f.value, multi) })
	case "matches", "not matches":
		re := regexp.MustCompile(f.value) // compiled once at parse time
		ok := allOf(vals, func(x any) bool { s, isStr := x.(string); return isStr && re.MatchString(s) })
		if f.op == "matches" {
			return ok
		}
		return !ok
	case "is empty":
		return allOf(vals, isEmpty) || len(vals) == 0
	case "is not empty":
		return !(allOf(vals, isEmpty) || len(vals) == 0)
	}
	return false
}

func allOf(vals []any, f func(any) bool) bool {
	if len(vals) == 0 {
		return false
	}
	for _, v := range vals {
		if !f(v) {
			return false
		}
	}
	return true
}

func anyOf(vals []any, f func(any) bool) bool {
	for _, v := range vals {
		if f(v) {
			return true
		}
	}
	return false
}

// resolve follows sel into doc; multi reports that a list was crossed.
func resolve(doc any, sel []string) (vals []any, multi bool) {
	cur := []any{doc}
	for _, part := range sel {
		var next []any
		for _, c := range cur {
			switch x := c.(type) {
			case map[string]any:
				if v, ok := x[part]; ok {
					next = append(next, v)
					continue
				}
				for k, v := range x {
					if strings.EqualFold(k, part) {
						next = append(next, v)
						break
					}
				}
			case []any:
				multi = true
				for _, e := range x {
					if m, ok := e.(map[string]any); ok {
						for k, v := range m {
							if strings.EqualFold(k, part) {
								next = append(next, v)
								break
							}
						}
					}
				}
			}
		}
		cur = next
	}
	return cur, multi
}

func scalarEq(x any, want string) bool {
	switch v := x.(type) {
	case string:
		return v == want
	case bool:
		return strconv.FormatBool(v) == strings.ToLower(want)
	case float64:
		f, err := strconv.ParseFloat(want, 64)
		return err == nil && f == v
	case nil:
		return want == ""
	}
	return false
}

func containsVal(x any, want string, _ bool) bool {
	switch v := x.(type) {
	case []any:
		for _, e := range v {
			if scalarEq(e, want) {
				return true
			}
		}
		return false
	case map[string]any:
		_, ok := v[want]
		return ok
	case string:
		return strings.Contains(v, want)
	}
	return scalarEq(x, want)
}

func isEmpty(x any) bool {
	switch v := x.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}
