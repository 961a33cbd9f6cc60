// Package config is the server's configuration: every environment variable in one typed table
// (vars.go: name, default, the kind of value and what a good one is, secret or not, help), and
// one parser, Load, that reads them all through a lookup function and reports every bad value at
// once, each error naming its variable and what it wants, never quoting a secret.
//
// The same table writes --help, docs/configuration.md, .env.example and app.json's env
// (tools/gendocs), so adding a variable touches its row, its field of Config and the code that
// uses it. A variable whose value is one of the server's own types (tokens, the proxy to trust...)
// is read here as text, and parsed by the code that owns the type in a Check passed to Load, so
// that its errors still come with all the others.
package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cloudinary-upload-api/internal/cloudinary"
)

// Secret is a string that never prints itself (internal/cloudinary's, which holds the API secret).
type Secret = cloudinary.Secret

// Var is one row of the table: one environment variable.
type Var struct {
	Name    string
	Default string // the value when unset or blank; "": none (Help says what unset means)
	Help    string // one paragraph: what it does, the values it takes
	Secret  bool   // never logged, never quoted in an error, no default or value shown anywhere
	Value   Value  // how its text is read, what a good one is, and the field of Config it fills
	Example string // the value .env.example shows when the variable has no default; "": none
	Heroku  *Heroku
	given   *bool // set to whether the variable was given (not blank)
}

// Heroku is how the Heroku Button's app.json asks for a variable: only the few a user sets
// there (at most eight: the form is one screen), the rest keep their defaults.
type Heroku struct {
	Order     int    // place in the form, from 1: what a user must fill in first
	Value     string // what the form proposes; "": the default (nothing for a secret)
	Required  bool
	Generator string // "secret": Heroku generates a random value
}

// Value reads a variable's text (blanks trimmed, never empty) into its field of Config. Its error
// is a Want (what a good value is), or a sentence that may start with the variable's name.
type Value interface {
	read(s string) error
}

// Check is a rule that needs more than one variable, or one of the server's own types. It runs
// only when every variable of Vars read well (so that one mistake gives one error), and may fill
// fields that depend on several variables. Its errors are about Vars[0] unless they start with
// another variable's name.
type Check struct {
	Vars  []string
	Check func(c *Config) error // errors.Join of one error per problem; Bad for NAME="value": want …
}

// Want is the error of a value that is not what the variable takes: Load writes it as
// NAME="value": want <what>, without the value for a secret.
func Want(what string) error { return wantError{what: what} }

// Bad is a Check's error about one variable's value, written as Want's is.
func Bad(name, what string) error { return wantError{name: name, what: what} }

type wantError struct{ name, what string }

func (e wantError) Error() string { return "want " + e.what }

// minSecretToRedact: a secret this long that appears in an error withholds the error. A shorter
// one would match letters of any sentence; the parsers never quote secrets in the first place.
const minSecretToRedact = 6

// Load reads every variable of the table through lookup (blank is unset: the default applies),
// then runs the table's checks and the caller's. It reports every bad value at once:
// errors.Join of one error per problem, in the table's order, checks last.
func Load(lookup func(string) string, checks ...Check) (Config, error) {
	var c Config
	vars := table(&c)
	byName := make(map[string]Var, len(vars))
	raw := make(map[string]string, len(vars))
	failed := map[string]bool{}
	var problems []error
	for _, v := range vars {
		byName[v.Name] = v
		s := strings.TrimSpace(lookup(v.Name))
		if v.given != nil {
			*v.given = s != ""
		}
		if s == "" {
			s = v.Default
		}
		raw[v.Name] = s
		if s == "" {
			continue // unset, without a default: the field's zero value
		}
		if err := v.Value.read(s); err != nil {
			failed[v.Name] = true
			problems = append(problems, describe(v.Name, err, byName, raw)...)
		}
	}
	for _, ch := range append(builtinChecks(), checks...) {
		runs := true
		for _, name := range ch.Vars {
			if _, ok := byName[name]; !ok {
				panic("config: a check reads " + name + ", which is not in the table")
			}
			runs = runs && !failed[name]
		}
		if !runs {
			continue
		}
		if err := ch.Check(&c); err != nil {
			name := ""
			if len(ch.Vars) > 0 {
				name = ch.Vars[0]
			}
			problems = append(problems, describe(name, err, byName, raw)...)
		}
	}
	return c, errors.Join(problems...)
}

// EnvFile is ENV_FILE as Load reads it (blank: the table's default), for the server to read
// that file before it calls Load with a lookup that falls back to it.
func EnvFile(lookup func(string) string) string {
	var c Config
	for _, v := range table(&c) {
		if v.Name == "ENV_FILE" {
			if s := strings.TrimSpace(lookup(v.Name)); s != "" {
				return s
			}
			return v.Default
		}
	}
	panic("config: no ENV_FILE in the table")
}

// describe writes err about the variable name (joined errors one by one): Want's as
// NAME="value": want …, others with NAME: in front unless they start with a variable's name. A message that would
// quote a secret's value is withheld.
func describe(name string, err error, vars map[string]Var, raw map[string]string) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, describe(name, e, vars, raw)...)
		}
		return out
	}
	var msg string
	var w wantError
	if errors.As(err, &w) {
		if w.name != "" {
			name = w.name
		}
		if vars[name].Secret {
			msg = name + ": " + w.Error()
		} else {
			msg = fmt.Sprintf("%s=%q: %s", name, raw[name], w.Error())
		}
	} else {
		msg = err.Error()
		if name != "" && !startsWithName(msg, vars) {
			msg = name + ": " + msg
		}
	}
	for n, v := range vars {
		if s := raw[n]; v.Secret && len(s) >= minSecretToRedact && strings.Contains(msg, s) {
			return []error{fmt.Errorf("%s: not valid (the message is withheld: it would quote the secret)", n)}
		}
	}
	return []error{errors.New(msg)}
}

// startsWithName reports whether msg starts with the name of a variable of the table.
func startsWithName(msg string, vars map[string]Var) bool {
	end := strings.IndexFunc(msg, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') })
	if end < 0 {
		end = len(msg)
	}
	_, ok := vars[msg[:end]]
	return ok
}

// value is a Value from a function.
type value func(s string) error

func (f value) read(s string) error { return f(s) }

// Text takes any text.
func Text[T ~string](dst *T) Value {
	return value(func(s string) error { *dst = T(s); return nil })
}

// Int takes a whole number from min to max (strconv.ParseInt's syntax, base 10).
func Int[T int | int64](dst *T, min, max T, want string) Value {
	return value(func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < int64(min) || n > int64(max) {
			return Want(want)
		}
		*dst = T(n)
		return nil
	})
}

// IntOr takes a positive whole number, or the word off (any case; 0 too for "off") as 0.
func IntOr(dst *int, word string, want string) Value {
	return value(func(s string) error {
		if strings.EqualFold(s, word) || (word == "off" && s == "0") {
			*dst = 0
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return Want(want)
		}
		*dst = n
		return nil
	})
}

// Size takes a number of bytes from min to max, with or without a unit (ParseSize).
func Size(dst *int64, min, max int64, want string) Value {
	return value(func(s string) error {
		n, err := ParseSize(s)
		if err != nil || n < min || n > max {
			return Want(want)
		}
		*dst = n
		return nil
	})
}

// Duration takes a time.ParseDuration duration of more than 0, or of 0 too with zeroOK.
func Duration(dst *time.Duration, zeroOK bool, want string) Value {
	return value(func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return Want(want)
		}
		*dst = d
		return nil
	})
}

// Bool takes what strconv.ParseBool takes: true, false, 1, 0, t, f in any usual case.
func Bool(dst *bool) Value {
	return value(func(s string) error {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return Want("true or false")
		}
		*dst = b
		return nil
	})
}

// OneOf takes one of choices, as written.
func OneOf(dst *string, choices ...string) Value {
	want := strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
	return value(func(s string) error {
		for _, c := range choices {
			if s == c {
				*dst = s
				return nil
			}
		}
		return Want(want)
	})
}

// List takes comma-separated items (blanks dropped; lower-cased first with lower), each checked
// by item (an error per bad item, which names it); at least one unless want is "".
func List(dst *[]string, lower bool, item func(string) error, want string) Value {
	return value(func(s string) error {
		if lower {
			s = strings.ToLower(s)
		}
		list := SplitList(s)
		var problems []error
		for _, it := range list {
			if err := item(it); err != nil {
				problems = append(problems, err)
			}
		}
		if len(list) == 0 && want != "" {
			return Want(want)
		}
		*dst = list
		return errors.Join(problems...)
	})
}

// Func takes what parse takes; its errors are reported as parse words them.
func Func[T any](dst *T, parse func(string) (T, error)) Value {
	return value(func(s string) error {
		v, err := parse(s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	})
}

// SplitList splits a comma-separated value, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseSize reads a size: a number of bytes, optionally followed by B, KB, KiB, MB, MiB, GB or
// GiB (any case, a space allowed before the unit). It is the one parser of every size variable:
// MAX_UPLOAD_BYTES, CHUNK_SIZE, UPLOAD_MEMORY, MAX_MEMORY_PER_CLIENT and MIN_UPLOAD_RATE's rate.
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "kib": 1 << 10, "mb": 1e6, "mib": 1 << 20, "gb": 1e9, "gib": 1 << 30}[strings.ToLower(unit)]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a number of bytes", v)
	}
	return n * mult, nil
}

// truncate keeps error messages short when they quote what a client or an operator wrote.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
