package config

import (
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Limits on what the loader reads, so that no input, however large or
// strange, crashes pvlb or takes long to answer. Real configurations are
// a few kilobytes, nested a few levels deep.
const (
	// MaxFileSize bounds one configuration file.
	MaxFileSize = 2 << 20
	// MaxNesting bounds brackets, braces and parentheses open at once. The
	// HCL parser recurses on each, and a Go stack overflow cannot be
	// recovered from.
	MaxNesting = 100
)

// checkShape rejects a file too large or nested too deep to parse, and one
// that is not text, before the parser sees it.
func checkShape(name string, src []byte) hcl.Diagnostics {
	if len(src) > MaxFileSize {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Configuration file too large",
			Detail: fmt.Sprintf("%s is %s; a configuration file may be at most %s. Split it into several files in one directory, or check that -c names the configuration.",
				name, byteSize(len(src)), byteSize(MaxFileSize)),
		}}
	}
	if !utf8.Valid(src) {
		pos := hcl.InitialPos
		for i := 0; i < len(src); {
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			pos = advance(pos, r, size)
			i += size
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Not a text file",
			Detail:   fmt.Sprintf("%s is not UTF-8 text; a configuration is HCL text. Check that -c names the configuration.", name),
			Subject:  &hcl.Range{Filename: name, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}},
		}}
	}
	if pos, ok := tooDeep(src); !ok {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Nested too deeply",
			Detail:   fmt.Sprintf("More than %d brackets, braces and parentheses are open at once here; a configuration needs a few.", MaxNesting),
			Subject:  &hcl.Range{Filename: name, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}},
		}}
	}
	return nil
}

func advance(pos hcl.Pos, r rune, size int) hcl.Pos {
	pos.Byte += size
	if r == '\n' {
		pos.Line++
		pos.Column = 1
	} else {
		pos.Column++
	}
	return pos
}

// tooDeep scans src as the HCL lexer would see its nesting: brackets in
// code and inside ${ } interpolations count, those in strings and comments
// do not. It returns the position of the first opening past MaxNesting.
func tooDeep(src []byte) (hcl.Pos, bool) {
	// stack holds what each open level is: a bracket in code, or a
	// string whose interpolations are code again.
	var stack []byte
	pos := hcl.InitialPos
	inString := func() bool { return len(stack) > 0 && stack[len(stack)-1] == '"' }
	for i := 0; i < len(src); {
		c := src[i]
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(src[i:])
		}
		switch {
		case inString():
			switch {
			case c == '\\' && i+1 < len(src):
				pos = advance(pos, r, 1)
				i++
				r, size = rune(src[i]), 1
			case c == '"' || c == '\n':
				stack = stack[:len(stack)-1]
			case c == '$' && i+1 < len(src) && src[i+1] == '{':
				stack = append(stack, '{')
				if len(stack) > MaxNesting {
					return pos, false
				}
				pos = advance(pos, r, 1)
				i++
				r, size = '{', 1
			}
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				r, size = utf8.DecodeRune(src[i:])
				pos = advance(pos, r, size)
				i += size
			}
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			for i < len(src) && !(src[i] == '*' && i+1 < len(src) && src[i+1] == '/') {
				r, size = utf8.DecodeRune(src[i:])
				pos = advance(pos, r, size)
				i += size
			}
			continue
		case c == '"' || c == '[' || c == '{' || c == '(':
			stack = append(stack, c)
			if len(stack) > MaxNesting {
				return pos, false
			}
		case c == ']' || c == '}' || c == ')':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
		pos = advance(pos, r, size)
		i += size
	}
	return pos, true
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
