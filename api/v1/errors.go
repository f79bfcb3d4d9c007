package v1

import (
	"fmt"
	"sort"
	"strings"
)

// ValidationError is returned by ParseSpec, ParseClouds and the Validate
// methods. It lists every problem found, each with the field path that is
// wrong and a reason that says what to do, sorted by field path.
type ValidationError struct {
	Fields []FieldError

	// subject names what was invalid in Error(): "spec" (the default) or
	// "clouds file".
	subject string
}

// Error renders all field errors on one line, e.g.
// `invalid spec: port: must be between 1 and 65535 (got 0); replicas.min: must be >= 0 (got -1)`.
func (e *ValidationError) Error() string {
	subject := e.subject
	if subject == "" {
		subject = "spec"
	}
	if len(e.Fields) == 0 {
		return "invalid " + subject
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	return "invalid " + subject + ": " + strings.Join(parts, "; ")
}

// Response converts the error into the API's error body.
func (e *ValidationError) Response() ErrorResponse {
	return ErrorResponse{Error: e.Error(), Fields: e.Fields}
}

// String renders "field: reason", or just the reason when Field is empty
// (an error about the whole document).
func (f FieldError) String() string {
	if f.Field == "" {
		return f.Reason
	}
	return f.Field + ": " + f.Reason
}

// MaxFieldErrors caps the errors reported for one document; a last entry
// (with an empty field) says how many more were found.
const MaxFieldErrors = 100

func newValidationError(subject string, errs []FieldError) *ValidationError {
	sortFieldErrors(errs)
	if n := len(errs); n > MaxFieldErrors {
		errs = append(errs[:MaxFieldErrors:MaxFieldErrors], FieldError{Reason: fmt.Sprintf("... and %d more errors", n-MaxFieldErrors)})
	}
	return &ValidationError{Fields: errs, subject: subject}
}

// errList collects field errors.
type errList []FieldError

// add records an error. String arguments longer than 100 bytes are user
// input and are shortened.
func (l *errList) add(field, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > 100 {
			args[i] = shorten(s)
		}
	}
	*l = append(*l, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// sortFieldErrors sorts by field path, comparing list indices numerically
// (env[2] before env[10]); errors on the same path keep their order.
func sortFieldErrors(errs []FieldError) {
	sort.SliceStable(errs, func(i, j int) bool { return lessPath(errs[i].Field, errs[j].Field) })
}

// lessPath is a natural-order comparison: runs of digits compare by value.
func lessPath(a, b string) bool {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			na, ra := digitRun(a)
			nb, rb := digitRun(b)
			// Compare by length after trimming leading zeros, then lexically.
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(ta) != len(tb) {
				return len(ta) < len(tb)
			}
			if ta != tb {
				return ta < tb
			}
			if na != nb {
				return na < nb
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// underPath reports whether field is path itself or inside it.
func underPath(field, path string) bool {
	if path == "" {
		return field == ""
	}
	if !strings.HasPrefix(field, path) {
		return false
	}
	rest := field[len(path):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}
