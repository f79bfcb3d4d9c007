package v1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// Fixed returns a Replicas with Min == Max == n.
func Fixed(n int) Replicas { return Replicas{Min: n, Max: n} }

// IsFixed reports whether the count does not autoscale (Min == Max).
func (r Replicas) IsFixed() bool { return r.Min == r.Max }

// MarshalJSON writes a plain number when Min == Max, else {"min":..,"max":..}.
func (r Replicas) MarshalJSON() ([]byte, error) {
	if r.Min == r.Max {
		return []byte(strconv.Itoa(r.Min)), nil
	}
	type plain Replicas
	return json.Marshal(plain(r))
}

// UnmarshalJSON accepts a whole number N (Min = Max = N) or an object
// {"min": a, "max": b}. In the object form a missing min means 1 (0 if max
// is 0) and a missing max means max = min; {} is {1, 1}. null leaves r as is.
func (r *Replicas) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	typeErr := func(what string) error {
		return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeOf(Replicas{})}
	}
	switch c := b[0]; {
	case c == '{':
		var o struct {
			Min *int `json:"min"`
			Max *int `json:"max"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return fmt.Errorf("replicas: %w", err)
		}
		switch {
		case o.Min == nil && o.Max == nil:
			*r = Replicas{Min: 1, Max: 1}
		case o.Min == nil:
			r.Max = *o.Max
			r.Min = min(1, max(0, r.Max))
		case o.Max == nil:
			r.Min, r.Max = *o.Min, *o.Min
		default:
			r.Min, r.Max = *o.Min, *o.Max
		}
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		s := string(b)
		if n, err := strconv.ParseInt(s, 10, 0); err == nil {
			*r = Fixed(int(n))
			return nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return typeErr("number " + s)
		}
		*r = Fixed(int(f))
		return nil
	case c == '"':
		return typeErr("string")
	case c == '[':
		return typeErr("array")
	default:
		return typeErr("bool")
	}
}
