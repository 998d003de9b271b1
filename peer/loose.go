package peer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// Lenient decoding, as Consul's HTTP API and config files accept it: keys
// of struct fields match case-insensitively and with or without
// underscores ("ServiceID", "service_id", "serviceid"), a field may have
// aliases (`loose:"ScriptArgs,args"`), a single value stands for a list of
// one, a list of one object stands for the object (HCL blocks), numbers may
// come as strings, and durations as Go duration strings or integer
// nanoseconds. Keys of maps (Meta, Header) are kept as given.
//
// Values are first turned into a tree of lnode that remembers line numbers
// (for config files) and then into Go values by reflection.

// lnode is one decoded value: an object, a list or a scalar.
type lnode struct {
	line          int
	obj           []lkv    // when isObj
	list          []*lnode // when isList
	val           any      // scalar: string, bool, json.Number, int64, float64 or nil
	isObj, isList bool
}

type lkv struct {
	key string
	val *lnode
}

// maxLooseDepth bounds nesting of untrusted input.
const maxLooseDepth = 32

// jsonToNode decodes JSON bytes into a node tree (no line numbers).
func jsonToNode(b []byte) (*lnode, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON: trailing data after the value")
	}
	return anyToNode(v, 0)
}

func anyToNode(v any, depth int) (*lnode, error) {
	if depth > maxLooseDepth {
		return nil, fmt.Errorf("value nested too deeply")
	}
	switch x := v.(type) {
	case map[string]any:
		n := &lnode{isObj: true}
		for k, e := range x {
			c, err := anyToNode(e, depth+1)
			if err != nil {
				return nil, err
			}
			n.obj = append(n.obj, lkv{k, c})
		}
		return n, nil
	case []any:
		n := &lnode{isList: true, list: make([]*lnode, 0, len(x))}
		for _, e := range x {
			c, err := anyToNode(e, depth+1)
			if err != nil {
				return nil, err
			}
			n.list = append(n.list, c)
		}
		return n, nil
	default:
		return &lnode{val: v}, nil
	}
}

// hclToNode parses HCL (or JSON, which HCL v1 also reads) keeping lines.
// The HCL v1 library panics on some malformed literals (token.Value on
// "0eA"); such a panic is turned into an error.
func hclToNode(b []byte) (n *lnode, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("malformed HCL: %v", r)
		}
	}()
	f, err := hcl.ParseBytes(b)
	if err != nil {
		return nil, err
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("top level must be an object")
	}
	return objectListToNode(list, 1, 0)
}

func objectListToNode(list *ast.ObjectList, line, depth int) (*lnode, error) {
	if depth > maxLooseDepth {
		return nil, fmt.Errorf("line %d: value nested too deeply", line)
	}
	n := &lnode{isObj: true, line: line}
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		val, err := astToNode(item.Val, depth+1)
		if err != nil {
			return nil, err
		}
		// `a "b" { ... }` is a = { b = { ... } }.
		for i := len(item.Keys) - 1; i >= 1; i-- {
			k := keyString(item.Keys[i])
			val = &lnode{isObj: true, line: item.Keys[i].Pos().Line, obj: []lkv{{k, val}}}
		}
		k := keyString(item.Keys[0])
		// HCL blocks with a repeated key (check {} check {}) form a list.
		n.obj = append(n.obj, lkv{k, val})
	}
	return n, nil
}

func keyString(k *ast.ObjectKey) string {
	if s, ok := k.Token.Value().(string); ok {
		return s
	}
	return k.Token.Text
}

func astToNode(v ast.Node, depth int) (*lnode, error) {
	if depth > maxLooseDepth {
		return nil, fmt.Errorf("value nested too deeply")
	}
	switch x := v.(type) {
	case *ast.ObjectType:
		return objectListToNode(x.List, x.Lbrace.Line, depth)
	case *ast.ListType:
		n := &lnode{isList: true, line: x.Lbrack.Line}
		for _, e := range x.List {
			c, err := astToNode(e, depth+1)
			if err != nil {
				return nil, err
			}
			n.list = append(n.list, c)
		}
		return n, nil
	case *ast.LiteralType:
		n := &lnode{line: x.Token.Pos.Line}
		switch x.Token.Type {
		case token.NUMBER, token.FLOAT, token.BOOL, token.STRING, token.HEREDOC:
			n.val = x.Token.Value()
		default:
			n.val = x.Token.Text
		}
		return n, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

// normKey is how struct field names and keys are compared.
func normKey(s string) string {
	s = strings.ToLower(s)
	if strings.ContainsAny(s, "_-") {
		s = strings.NewReplacer("_", "", "-", "").Replace(s)
	}
	return s
}

// looseErr is a decoding error at a line (0: unknown) and a key path.
type looseErr struct {
	line int
	path string
	msg  string
}

func (e *looseErr) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.line, e.path, e.msg)
	}
	return fmt.Sprintf("%s: %s", e.path, e.msg)
}

// looseDecoder fills Go values from nodes. strict refuses unknown keys
// (config files); API bodies ignore them, as Consul does.
type looseDecoder struct {
	strict bool
}

var durationType = reflect.TypeOf(Duration(0))

func (d looseDecoder) decode(n *lnode, dst reflect.Value, path string) error {
	fail := func(format string, args ...any) error {
		return &looseErr{line: n.line, path: path, msg: fmt.Sprintf(format, args...)}
	}
	if n.val == nil && !n.isObj && !n.isList {
		return nil // null leaves the zero value
	}
	if dst.Type() == durationType {
		v, err := scalarDuration(n)
		if err != nil {
			return fail("%v", err)
		}
		dst.SetInt(int64(v))
		return nil
	}
	switch dst.Kind() {
	case reflect.Pointer:
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		return d.decode(n, dst.Elem(), path)
	case reflect.Struct:
		if n.isList {
			switch len(n.list) {
			case 0:
				return nil
			case 1:
				return d.decode(n.list[0], dst, path)
			}
			return fail("want one object, got a list of %d", len(n.list))
		}
		if !n.isObj {
			return fail("want an object")
		}
		return d.decodeStruct(n, dst, path)
	case reflect.Slice:
		items := n.list
		if !n.isList {
			items = []*lnode{n}
		}
		// HCL's repeated blocks nest: check { } check { } arrive as
		// separate keys, merged by decodeStruct; lists of lists of
		// objects (HCL [{...}]) flatten here.
		s := reflect.MakeSlice(dst.Type(), 0, len(items))
		for i, it := range items {
			if it.isList && dst.Type().Elem().Kind() == reflect.Struct {
				for _, inner := range it.list {
					e := reflect.New(dst.Type().Elem()).Elem()
					if err := d.decode(inner, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
						return err
					}
					s = reflect.Append(s, e)
				}
				continue
			}
			e := reflect.New(dst.Type().Elem()).Elem()
			if err := d.decode(it, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			s = reflect.Append(s, e)
		}
		dst.Set(s)
		return nil
	case reflect.Map:
		objs := []*lnode{n}
		if n.isList {
			objs = n.list
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMap(dst.Type()))
		}
		for _, o := range objs {
			if !o.isObj {
				return fail("want an object")
			}
			for _, kv := range o.obj {
				e := reflect.New(dst.Type().Elem()).Elem()
				if err := d.decode(kv.val, e, path+"."+kv.key); err != nil {
					return err
				}
				dst.SetMapIndex(reflect.ValueOf(kv.key).Convert(dst.Type().Key()), e)
			}
		}
		return nil
	case reflect.String:
		s, err := scalarString(n)
		if err != nil {
			return fail("%v", err)
		}
		dst.SetString(s)
		return nil
	case reflect.Bool:
		switch v := n.val.(type) {
		case bool:
			dst.SetBool(v)
			return nil
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fail("want a boolean, got %q", v)
			}
			dst.SetBool(b)
			return nil
		}
		return fail("want a boolean")
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := scalarInt(n)
		if err != nil {
			return fail("%v", err)
		}
		if dst.OverflowInt(i) {
			return fail("number %d out of range", i)
		}
		dst.SetInt(i)
		return nil
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		i, err := scalarInt(n)
		if err != nil || i < 0 {
			return fail("want a non-negative integer")
		}
		dst.SetUint(uint64(i))
		return nil
	case reflect.Interface:
		dst.Set(reflect.ValueOf(nodeToAny(n)))
		return nil
	}
	return fail("cannot decode into %s", dst.Type())
}

// nodeToAny turns a node back into plain Go values (proxy config maps).
func nodeToAny(n *lnode) any {
	switch {
	case n.isObj:
		m := make(map[string]any, len(n.obj))
		for _, kv := range n.obj {
			m[kv.key] = nodeToAny(kv.val)
		}
		return m
	case n.isList:
		l := make([]any, len(n.list))
		for i, e := range n.list {
			l[i] = nodeToAny(e)
		}
		return l
	}
	if num, ok := n.val.(json.Number); ok {
		if i, err := num.Int64(); err == nil {
			return i
		}
		f, _ := num.Float64()
		return f
	}
	return n.val
}

// structFields maps the normalized names and aliases of a struct's fields
// to their indexes.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("loose")
		if tag == "-" {
			continue
		}
		m[normKey(f.Name)] = i
		for _, a := range strings.Split(tag, ",") {
			if a != "" {
				m[normKey(a)] = i
			}
		}
	}
	return m
}

func (d looseDecoder) decodeStruct(n *lnode, dst reflect.Value, path string) error {
	fields := structFields(dst.Type())
	// Group repeated keys (HCL blocks) so that a slice field collects them.
	seen := map[int][]*lnode{}
	var order []int
	for _, kv := range n.obj {
		i, ok := fields[normKey(kv.key)]
		if !ok {
			if d.strict {
				line := kv.val.line
				if line == 0 {
					line = n.line
				}
				return &looseErr{line: line, path: path, msg: fmt.Sprintf("unknown key %q", kv.key)}
			}
			continue
		}
		if _, dup := seen[i]; !dup {
			order = append(order, i)
		}
		seen[i] = append(seen[i], kv.val)
	}
	for _, i := range order {
		vals := seen[i]
		f := dst.Field(i)
		p := path + "." + dst.Type().Field(i).Name
		if path == "" {
			p = dst.Type().Field(i).Name
		}
		v := vals[0]
		if len(vals) > 1 {
			if f.Kind() != reflect.Slice && f.Kind() != reflect.Map {
				return &looseErr{line: vals[1].line, path: p, msg: "given more than once"}
			}
			v = &lnode{isList: true, line: vals[0].line, list: vals}
		}
		if err := d.decode(v, f, p); err != nil {
			return err
		}
	}
	return nil
}

func scalarString(n *lnode) (string, error) {
	switch v := n.val.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	if n.isList && len(n.list) == 1 {
		return scalarString(n.list[0])
	}
	return "", fmt.Errorf("want a string")
}

func scalarInt(n *lnode) (int64, error) {
	switch v := n.val.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil || f != float64(int64(f)) {
			return 0, fmt.Errorf("want an integer, got %s", v)
		}
		return int64(f), nil
	case int64:
		return v, nil
	case float64:
		if v != float64(int64(v)) {
			return 0, fmt.Errorf("want an integer, got %v", v)
		}
		return int64(v), nil
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("want an integer, got %q", v)
		}
		return i, nil
	}
	return 0, fmt.Errorf("want an integer")
}

// scalarDuration reads "10s", "1m30s" or an integer of nanoseconds (what
// Go's time.Duration marshals to, and what Consul's API accepts).
func scalarDuration(n *lnode) (time.Duration, error) {
	if s, ok := n.val.(string); ok {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (want e.g. \"10s\")", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		return d, nil
	}
	i, err := scalarInt(n)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as \"10s\"")
	}
	if i < 0 {
		return 0, fmt.Errorf("negative duration %d", i)
	}
	return time.Duration(i), nil
}

// Duration is a time.Duration that decodes leniently and encodes as a Go
// duration string, as Consul's API does.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes the duration as a string ("10s"); zero as "".
func (d Duration) MarshalJSON() ([]byte, error) {
	if d == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string or integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	n, err := jsonToNode(b)
	if err != nil {
		return err
	}
	v, err := scalarDuration(n)
	*d = Duration(v)
	return err
}

// decodeLooseJSON decodes an API request body into dst leniently. Unknown
// keys are ignored.
func decodeLooseJSON(b []byte, dst any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("request body is empty")
	}
	n, err := jsonToNode(b)
	if err != nil {
		return err
	}
	return looseDecoder{}.decode(n, reflect.ValueOf(dst).Elem(), "")
}
