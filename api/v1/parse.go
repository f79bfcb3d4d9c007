package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// MaxSpecBytes is the largest spec (or clouds file) accepted (1 MiB).
const MaxSpecBytes = 1 << 20

// APIVersion is the only accepted value of a spec's optional top-level
// apiVersion field.
const APIVersion = "v1"

// Kind is the only accepted value of a spec's optional top-level kind field.
const Kind = "Deployment"

// seedAliases maps the seed form's field names to the native ones.
var seedAliases = []struct{ seed, native string }{
	{"app_name", "name"},
	{"docker_image", "image"},
}

// ParseSpec parses a YAML or JSON deployment spec strictly, normalises the
// seed form, applies defaults and validates. On failure it returns
// *ValidationError listing every problem found.
//
// Strict means: unknown fields anywhere are rejected (with the nearest valid
// name as a suggestion), values of the wrong type are rejected with their
// path, duplicate keys and multiple YAML documents are rejected.
//
// The seed form is accepted too: a top-level apiVersion ("v1" only) and kind
// ("Deployment" only) may be given and are dropped; app_name stands for name
// and docker_image for image (giving both with different values is an error).
//
// resources.cpu and resources.memory may be written as numbers; they are
// stored as strings. Defaults are applied only to fields that are absent (or
// null): an explicit `port: 0` or `health.periodSeconds: 0` is an error, not
// a request for the default, and an explicit `replicas: 0` is kept (the
// deployment is scaled to zero). See (*DeploymentSpec).Default for the
// defaults.
//
// Errors are sorted by field path; at most MaxFieldErrors are reported.
func ParseSpec(data []byte) (*DeploymentSpec, error) {
	root, ferr := loadDocument(data)
	if ferr != nil {
		return nil, newValidationError("spec", []FieldError{*ferr})
	}
	obj, ferr := topObject(root, "spec")
	if ferr != nil {
		return nil, newValidationError("spec", []FieldError{*ferr})
	}

	var errs errList
	renamed := normaliseSeed(obj, &errs)

	extra := []string{"apiVersion", "kind"}
	for _, a := range seedAliases {
		extra = append(extra, a.seed)
	}
	w := &walker{topExtra: extra}
	w.walk("", obj, reflect.TypeOf(DeploymentSpec{}))
	errs = append(errs, w.errs...)

	var spec DeploymentSpec
	if ferr := decodeTree(obj, &spec); ferr != nil {
		errs = append(errs, *ferr)
	}
	spec.applyDefaults(func(path string) bool { return treeHas(obj, path) })
	spec.normalize()
	semantic := w.filter(spec.validate())
	// "set image or command" is noise when one of them was given but wrong.
	for _, b := range w.bad {
		if underPath(b, "image") || underPath(b, "command") {
			semantic = slices.DeleteFunc(semantic, func(e FieldError) bool {
				return e.Field == "image" && strings.HasPrefix(e.Reason, needImageReason)
			})
			break
		}
	}
	errs = append(errs, semantic...)

	if len(errs) > 0 {
		for i := range errs {
			for native, seed := range renamed {
				if underPath(errs[i].Field, native) {
					errs[i].Field = seed + errs[i].Field[len(native):]
				}
			}
		}
		return nil, newValidationError("spec", errs)
	}
	return &spec, nil
}

// ParseClouds parses a YAML or JSON clouds file strictly and validates it.
// On failure it returns *ValidationError.
func ParseClouds(data []byte) (*CloudsFile, error) {
	root, ferr := loadDocument(data)
	if ferr != nil {
		return nil, newValidationError("clouds file", []FieldError{*ferr})
	}
	obj, ferr := topObject(root, "clouds file")
	if ferr != nil {
		return nil, newValidationError("clouds file", []FieldError{*ferr})
	}
	var errs errList
	w := &walker{}
	w.walk("", obj, reflect.TypeOf(CloudsFile{}))
	errs = append(errs, w.errs...)

	var f CloudsFile
	if ferr := decodeTree(obj, &f); ferr != nil {
		errs = append(errs, *ferr)
	}
	f.normalize()
	errs = append(errs, w.filter(f.validate())...)
	if len(errs) > 0 {
		return nil, newValidationError("clouds file", errs)
	}
	return &f, nil
}

// loadDocument turns YAML (or JSON, which is YAML) into a generic tree of
// map[string]any, []any, string, json.Number, bool and nil.
func loadDocument(data []byte) (any, *FieldError) {
	if len(data) > MaxSpecBytes {
		return nil, &FieldError{Reason: fmt.Sprintf("document is %d bytes; the limit is %d bytes (1 MiB): make it smaller", len(data), MaxSpecBytes)}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a UTF-8 byte-order mark
	if line := secondDocumentLine(data); line > 0 {
		return nil, &FieldError{Reason: fmt.Sprintf("malformed YAML: line %d: a second YAML document starts here; give one document only", line)}
	}
	if looksLikeJSON(data) {
		if err := json.Unmarshal(data, new(any)); err != nil {
			return nil, &FieldError{Reason: "malformed JSON: " + jsonErrorWithLine(data, err)}
		}
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, &FieldError{Reason: "malformed YAML/JSON: " + cleanYAMLError(err)}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &FieldError{Reason: "malformed YAML/JSON: " + err.Error()}
	}
	return v, nil
}

// looksLikeJSON reports whether data starts like a JSON object ({"...) rather
// than a YAML flow mapping ({name: ...}); JSON is then checked as JSON, which
// is stricter than reading it as YAML.
func looksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	t = bytes.TrimLeft(t[1:], " \t\r\n")
	return len(t) > 0 && (t[0] == '"' || t[0] == '}')
}

func jsonErrorWithLine(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset > 0 && int(se.Offset) <= len(data) {
		before := data[:se.Offset]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n') - 1
		return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
	}
	return err.Error()
}

func topObject(root any, what string) (map[string]any, *FieldError) {
	switch v := root.(type) {
	case map[string]any:
		return v, nil
	case nil:
		return nil, &FieldError{Reason: what + " is empty: write a YAML or JSON object"}
	default:
		return nil, &FieldError{Reason: fmt.Sprintf("expected an object (a mapping of field names to values) at the top level, got %s", describe(v))}
	}
}

var yamlLineRe = regexp.MustCompile(`\s+`)

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors: ")
	s = strings.TrimSpace(yamlLineRe.ReplaceAllString(s, " "))
	return s
}

// secondDocumentLine returns the 1-based line of a "---" marker that starts a
// second YAML document, or 0. A marker before any content is allowed.
func secondDocumentLine(data []byte) int {
	content := false
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		l = bytes.TrimRight(l, "\r")
		if isDocMarker(l, "---") || isDocMarker(l, "...") {
			if content {
				// "..." ends a document; content after it is a new one.
				rest := bytes.TrimSpace(stripComments(data))
				if isDocMarker(l, "---") || len(rest) > 0 {
					return line
				}
				return 0
			}
			if isDocMarker(l, "---") && len(bytes.TrimSpace(l[3:])) > 0 && !bytes.HasPrefix(bytes.TrimSpace(l[3:]), []byte("#")) {
				content = true // "--- {a: 1}"
			}
			continue
		}
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' || (t[0] == '%' && !content) {
			continue
		}
		content = true
	}
	return 0
}

func isDocMarker(l []byte, m string) bool {
	return bytes.HasPrefix(l, []byte(m)) && (len(l) == len(m) || l[len(m)] == ' ' || l[len(m)] == '\t')
}

func stripComments(data []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		out = append(out, t...)
	}
	return out
}

// normaliseSeed removes apiVersion and kind and renames seed-form fields to
// their native names in place. It returns native→seed for the renamed ones so
// that errors can name the field the user wrote.
func normaliseSeed(obj map[string]any, errs *errList) map[string]string {
	if v, ok := obj["apiVersion"]; ok {
		delete(obj, "apiVersion")
		if s, isStr := v.(string); !isStr || s != APIVersion {
			errs.add("apiVersion", "must be %q (got %s); remove it or set it to %q", APIVersion, describe(v), APIVersion)
		}
	}
	if v, ok := obj["kind"]; ok {
		delete(obj, "kind")
		if s, isStr := v.(string); !isStr || s != Kind {
			errs.add("kind", "must be %q (got %s); remove it or set it to %q", Kind, describe(v), Kind)
		}
	}
	renamed := map[string]string{}
	for _, a := range seedAliases {
		sv, ok := obj[a.seed]
		if !ok {
			continue
		}
		delete(obj, a.seed)
		if sv == nil {
			continue // null: as if absent
		}
		if nv, both := obj[a.native]; both && nv != nil {
			if !reflect.DeepEqual(nv, sv) {
				errs.add(a.seed, "conflicts with %s (%s vs %s); %s is the seed-form name of %s, set only one of them", a.native, describe(sv), describe(nv), a.seed, a.native)
			}
			continue
		}
		obj[a.native] = sv
		renamed[a.native] = a.seed
	}
	return renamed
}

// decodeTree decodes the (already checked) tree into out.
func decodeTree(tree any, out any) *FieldError {
	j, err := json.Marshal(tree)
	if err != nil {
		return &FieldError{Reason: "cannot re-encode document: " + err.Error()}
	}
	if err := json.Unmarshal(j, out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &FieldError{Field: te.Field, Reason: fmt.Sprintf("expected %s, got a %s", te.Type, te.Value)}
		}
		return &FieldError{Reason: err.Error()}
	}
	return nil
}

// treeHas reports whether the dotted path exists in the tree with a non-null value.
func treeHas(tree any, path string) bool {
	cur := tree
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[k]; !ok {
			return false
		}
	}
	return cur != nil
}

// ---- strict walker ----

var (
	replicasType  = reflect.TypeOf(Replicas{})
	resourcesType = reflect.TypeOf(Resources{})
	capacityType  = reflect.TypeOf(Capacity{})
)

// numberAsString lists the string fields that may also be written as numbers.
func numberAsString(t reflect.Type, field string) bool {
	switch t {
	case resourcesType:
		return field == "CPU" || field == "Memory"
	case capacityType:
		return field == "Memory"
	}
	return false
}

// walker checks a generic tree against a Go type's json tags. It records
// unknown fields and type errors with their paths and removes the offending
// values from the tree, so the rest can still be decoded and validated.
type walker struct {
	errs     errList
	bad      []string // paths with structural errors
	topExtra []string // extra names accepted (already removed) at the top level, for suggestions
}

func (w *walker) fail(path, format string, args ...any) {
	w.errs.add(path, format, args...)
	w.bad = append(w.bad, path)
}

// filter drops semantic errors on paths that already have a structural
// error: they are consequences of the value that was removed.
func (w *walker) filter(errs []FieldError) []FieldError {
	bad := make(map[string]bool, len(w.bad))
	for _, b := range w.bad {
		if b != "" {
			bad[b] = true
		}
	}
	var out []FieldError
	for _, e := range errs {
		if !bad[e.Field] && !anyParentIn(e.Field, bad) {
			out = append(out, e)
		}
	}
	return out
}

// anyParentIn reports whether a path that contains field (cut before a '.'
// or '[') is in set.
func anyParentIn(field string, set map[string]bool) bool {
	for i := 0; i < len(field); i++ {
		if (field[i] == '.' || field[i] == '[') && set[field[:i]] {
			return true
		}
	}
	return false
}

type jsonField struct {
	name   string
	goName string
	typ    reflect.Type
}

func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, goName: f.Name, typ: f.Type})
	}
	return out
}

func childPath(path, key string) string {
	if !simpleKeyRe.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var simpleKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// walk checks v against t. It returns the value to keep (possibly converted)
// and false if the value must be dropped.
func (w *walker) walk(path string, v any, t reflect.Type) (any, bool) {
	return w.walkField(path, v, t, false)
}

func (w *walker) walkField(path string, v any, t reflect.Type, numOK bool) (any, bool) {
	if v == nil {
		return nil, true // null leaves the zero value (or the default)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == replicasType {
		switch x := v.(type) {
		case json.Number:
			return w.integer(path, x, "a whole number of replicas or an object {min, max}")
		case map[string]any:
			return w.object(path, x, t)
		default:
			w.fail(path, "expected a whole number or an object {min, max}, got %s", describe(v))
			return nil, false
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "expected an object with fields %s, got %s", fieldList(t), describe(v))
			return nil, false
		}
		return w.object(path, m, t)
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			w.fail(path, "expected a list, got %s%s", describe(v), listHint(t, v))
			return nil, false
		}
		for i, e := range l {
			nv, keep := w.walk(indexPath(path, i), e, t.Elem())
			if !keep {
				nv = nil
			}
			l[i] = nv
		}
		return l, true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "expected an object (a mapping of names to values), got %s", describe(v))
			return nil, false
		}
		for _, k := range sortedKeys(m) {
			cp := childPath(path, k)
			if bad := badRune(k); bad != 0 {
				w.fail(cp, "key must not contain control characters or byte-order marks (found %U)", bad)
				delete(m, k)
				continue
			}
			nv, keep := w.walk(cp, m[k], t.Elem())
			if keep {
				m[k] = nv
			} else {
				delete(m, k)
			}
		}
		return m, true
	case reflect.String:
		switch x := v.(type) {
		case string:
			if bad := badRune(x); bad != 0 {
				w.fail(path, "must not contain control characters or byte-order marks (found %U)", bad)
				return nil, false
			}
			return x, true
		case json.Number:
			if numOK {
				return x.String(), true
			}
		}
		hint := ""
		switch v.(type) {
		case json.Number:
			hint = "; quote the value"
		case bool:
			hint = "; quote the value (YAML reads unquoted y/n/yes/no/on/off/true/false as booleans)"
		}
		w.fail(path, "expected a string, got %s%s", describe(v), hint)
		return nil, false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "expected a whole number, got %s", describe(v))
			return nil, false
		}
		return w.integer(path, n, "a whole number")
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "expected a number, got %s", describe(v))
			return nil, false
		}
		f, err := strconv.ParseFloat(n.String(), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			w.fail(path, "number %s is out of range", n)
			return nil, false
		}
		return n, true
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.fail(path, "expected true or false, got %s", describe(v))
			return nil, false
		}
		return v, true
	case reflect.Interface:
		return v, true
	}
	w.fail(path, "unsupported value %s", describe(v))
	return nil, false
}

// integer accepts integral numbers (also written as 3.0 or 1e3) that fit in
// 32 bits and returns them in canonical form.
func (w *walker) integer(path string, n json.Number, want string) (any, bool) {
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		if i > math.MaxInt32 || i < math.MinInt32 {
			w.fail(path, "number %s is out of range", n)
			return nil, false
		}
		return json.Number(strconv.FormatInt(i, 10)), true
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || f != math.Trunc(f) {
		w.fail(path, "expected %s, got %s", want, n)
		return nil, false
	}
	if f > math.MaxInt32 || f < math.MinInt32 {
		w.fail(path, "number %s is out of range", n)
		return nil, false
	}
	return json.Number(strconv.FormatInt(int64(f), 10)), true
}

func (w *walker) object(path string, m map[string]any, t reflect.Type) (any, bool) {
	fields := jsonFields(t)
	byName := make(map[string]jsonField, len(fields))
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		byName[f.name] = f
		names = append(names, f.name)
	}
	candidates := names
	if path == "" && len(w.topExtra) > 0 {
		candidates = append(append([]string{}, names...), w.topExtra...)
	}
	for _, k := range sortedKeys(m) {
		f, ok := byName[k]
		if !ok {
			if len(w.errs) < 4*MaxFieldErrors {
				w.fail(childPath(path, k), "%s", unknownFieldReason(k, candidates))
			} else { // hostile input: skip the (costly) suggestion
				w.fail(childPath(path, k), "unknown field %q", shorten(k))
			}
			delete(m, k)
			continue
		}
		nv, keep := w.walkField(childPath(path, k), m[k], f.typ, numberAsString(t, f.goName))
		if keep {
			m[k] = nv
		} else {
			delete(m, k)
		}
	}
	return m, true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func fieldList(t reflect.Type) string {
	if t == replicasType {
		return "min, max"
	}
	var names []string
	for _, f := range jsonFields(t) {
		names = append(names, f.name)
	}
	return strings.Join(names, ", ")
}

func listHint(t reflect.Type, v any) string {
	if t.Elem().Kind() == reflect.String {
		if _, isStr := v.(string); isStr {
			return ` (write ["a", "b"] or one item per "- " line)`
		}
	}
	return ""
}

// shorten cuts long user input for error messages.
func shorten(s string) string {
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// describe renders a generic value for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a string (%q)", shorten(x))
	case json.Number:
		return fmt.Sprintf("a number (%s)", x)
	case bool:
		return fmt.Sprintf("a boolean (%t)", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// badRune returns the first character that cannot be stored and re-read
// faithfully (control characters other than tab and newlines, byte-order
// marks, non-characters), or 0.
func badRune(s string) rune {
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return r
		case r == 0xfeff || r == 0xfffe || r == 0xffff:
			return r
		}
	}
	return 0
}

// ---- suggestions ----

func unknownFieldReason(key string, candidates []string) string {
	if s := suggest(key, candidates); s != "" {
		return fmt.Sprintf("unknown field %q; did you mean %q?", key, s)
	}
	sorted := append([]string{}, candidates...)
	sort.Strings(sorted)
	return fmt.Sprintf("unknown field %q; valid fields here: %s", shorten(key), strings.Join(sorted, ", "))
}

// suggest returns the candidate nearest to key (case-insensitive, ignoring
// '_' and '-'), or "" if none is close enough to be a plausible typo.
func suggest(key string, candidates []string) string {
	fold := func(s string) string { return foldReplacer.Replace(strings.ToLower(s)) }
	k := fold(key)
	if len(k) > 64 || len(k) == 0 {
		return ""
	}
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		d := levenshtein(k, fold(c))
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	n := utf8.RuneCountInString(k)
	limit := 1
	switch {
	case n > 8:
		limit = 3
	case n > 3:
		limit = 2
	}
	if bestD <= limit {
		return best
	}
	// "cnt" -> "count": an abbreviation keeps the letters in order.
	if n >= 3 {
		for _, c := range candidates {
			if isSubsequence(k, fold(c)) && fold(c)[0] == k[0] {
				return c
			}
		}
	}
	// "healthcheck" -> "health", "envs" -> "env": one contains the other.
	for _, c := range candidates {
		fc := fold(c)
		if len(fc) >= 3 && len(k) >= 3 && (strings.HasPrefix(k, fc) || strings.HasPrefix(fc, k)) {
			return c
		}
	}
	return ""
}

var foldReplacer = strings.NewReplacer("_", "", "-", "")

func isSubsequence(short, long string) bool {
	i := 0
	for j := 0; j < len(long) && i < len(short); j++ {
		if short[i] == long[j] {
			i++
		}
	}
	return i == len(short)
}

// levenshtein returns the edit distance between a and b, counting a swap of
// two adjacent characters as one edit (optimal string alignment distance).
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rolling rows: i-2, i-1 and i.
	pp := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(rb)]
}
