package encode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a quoted JSON string, escaped as encoding/json does without
// HTML escaping: ", \, control characters, U+2028 and U+2029 are escaped, invalid UTF-8
// becomes U+FFFD.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 plain ASCII bytes at a time.
		for i+8 <= len(s) && !needsEscape8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if size == 0 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// needsEscape8 reports whether any of 8 bytes is a control character, '"', '\\' or non-ASCII.
func needsEscape8(x uint64) bool {
	return (x|hasLess(x, 0x20)|hasZero(x^(lsb*'"'))|hasZero(x^(lsb*'\\')))&msb != 0
}

// hasQuoteOrControl8 reports whether any of 8 bytes is a control character, '"' or '\\'.
func hasQuoteOrControl8(x uint64) bool {
	return (hasLess(x, 0x20)|hasZero(x^(lsb*'"'))|hasZero(x^(lsb*'\\')))&msb != 0
}

// hasLess sets the high bit of bytes below n (n <= 128), exact for bytes below 0x80; bytes
// of 0x80 and above may be flagged too, which the callers treat as non-ASCII anyway or
// re-check byte by byte.
func hasLess(x uint64, n uint64) uint64 { return (x - lsb*n) & ^x & msb }

func hasZero(x uint64) uint64 { return (x - lsb) & ^x & msb }

// decodeRune decodes the UTF-8 sequence at the start of s (s[0] >= 0x80); size 0 means
// invalid.
func decodeRune(s []byte) (r rune, size int) {
	n := len(s)
	c0 := s[0]
	cont := func(c byte) bool { return c >= 0x80 && c <= 0xbf }
	switch {
	case c0 < 0xc2:
		return 0, 0
	case c0 < 0xe0:
		if n < 2 || !cont(s[1]) {
			return 0, 0
		}
		return rune(c0&0x1f)<<6 | rune(s[1]&0x3f), 2
	case c0 < 0xf0:
		if n < 3 || !cont(s[2]) {
			return 0, 0
		}
		lo, hi := byte(0x80), byte(0xbf)
		if c0 == 0xe0 {
			lo = 0xa0
		} else if c0 == 0xed {
			hi = 0x9f
		}
		if s[1] < lo || s[1] > hi {
			return 0, 0
		}
		return rune(c0&0x0f)<<12 | rune(s[1]&0x3f)<<6 | rune(s[2]&0x3f), 3
	case c0 < 0xf5:
		if n < 4 || !cont(s[2]) || !cont(s[3]) {
			return 0, 0
		}
		lo, hi := byte(0x80), byte(0xbf)
		if c0 == 0xf0 {
			lo = 0x90
		} else if c0 == 0xf4 {
			hi = 0x8f
		}
		if s[1] < lo || s[1] > hi {
			return 0, 0
		}
		return rune(c0&0x07)<<18 | rune(s[1]&0x3f)<<12 | rune(s[2]&0x3f)<<6 | rune(s[3]&0x3f), 4
	}
	return 0, 0
}

// appendUUID appends 16 bytes in the canonical 8-4-4-4-12 lower-case form.
func appendUUID(b []byte, u []byte) []byte {
	if len(u) != 16 {
		return b
	}
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

// appendTimestamp appends microseconds since the epoch as RFC 3339 in UTC with exactly six
// fractional digits: 2026-11-28T12:00:00.123456Z. Years outside 0000-9999, which RFC 3339
// cannot write, go through package time.
func appendTimestamp(b []byte, micros int64) []byte {
	const (
		microsPerDay = 86400 * 1000000
		minMicros    = -62167219200 * 1000000 // 0000-01-01T00:00:00Z
		maxMicros    = 253402300800*1000000 - 1
	)
	if micros < minMicros || micros > maxMicros {
		return time.UnixMicro(micros).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	days := micros / microsPerDay
	rem := micros % microsPerDay
	if rem < 0 {
		rem += microsPerDay
		days--
	}
	// civil from days (H. Hinnant), days since 1970-01-01
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	sec := rem / 1000000
	us := rem % 1000000
	hh, mm, ss := sec/3600, sec/60%60, sec%60
	b = append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+hh/10), byte('0'+hh%10), ':', byte('0'+mm/10), byte('0'+mm%10), ':',
		byte('0'+ss/10), byte('0'+ss%10), '.',
		byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10), 'Z')
	return b
}

// JSON text checking. The check is a single pass without allocation that accepts exactly
// RFC 8259 JSON in valid UTF-8, with a nesting limit.

type jsonCheck int

const (
	jsonInvalid   jsonCheck = iota
	jsonOK                  // valid, no CR or LF outside strings
	jsonMultiline           // valid, but whitespace holds CR or LF: compact before embedding
)

// maxJSONDepth bounds nesting; deeper text is treated as invalid (and emitted as a string).
const maxJSONDepth = 512

func checkJSON(s []byte) jsonCheck {
	if !utf8.Valid(s) {
		return jsonInvalid
	}
	p := jsonParser{s: s}
	p.ws()
	if !p.value(0) {
		return jsonInvalid
	}
	p.ws()
	if p.i != len(s) {
		return jsonInvalid
	}
	if p.newline {
		return jsonMultiline
	}
	return jsonOK
}

type jsonParser struct {
	s       []byte
	i       int
	newline bool
}

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t':
		case '\n', '\r':
			p.newline = true
		default:
			return
		}
		p.i++
	}
}

func (p *jsonParser) value(depth int) bool {
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; c {
	case '{':
		if depth >= maxJSONDepth {
			return false
		}
		p.i++
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return true
		}
		for {
			if p.i >= len(p.s) || p.s[p.i] != '"' || !p.str() {
				return false
			}
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return false
			}
			p.i++
			p.ws()
			if !p.value(depth + 1) {
				return false
			}
			p.ws()
			if p.i >= len(p.s) {
				return false
			}
			if p.s[p.i] == '}' {
				p.i++
				return true
			}
			if p.s[p.i] != ',' {
				return false
			}
			p.i++
			p.ws()
		}
	case '[':
		if depth >= maxJSONDepth {
			return false
		}
		p.i++
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return true
		}
		for {
			if !p.value(depth + 1) {
				return false
			}
			p.ws()
			if p.i >= len(p.s) {
				return false
			}
			if p.s[p.i] == ']' {
				p.i++
				return true
			}
			if p.s[p.i] != ',' {
				return false
			}
			p.i++
			p.ws()
		}
	case '"':
		return p.str()
	case 't':
		return p.lit("true")
	case 'f':
		return p.lit("false")
	case 'n':
		return p.lit("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.num()
		}
		return false
	}
}

func (p *jsonParser) lit(l string) bool {
	if len(p.s)-p.i < len(l) || string(p.s[p.i:p.i+len(l)]) != l {
		return false
	}
	p.i += len(l)
	return true
}

// str checks a string; p.s[p.i] is the opening quote. UTF-8 was checked up front.
func (p *jsonParser) str() bool {
	s := p.s
	i := p.i + 1
	for i < len(s) {
		for i+8 <= len(s) && !hasQuoteOrControl8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(s) {
				return false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) {
					return false
				}
				for _, h := range s[i+2 : i+6] {
					if !isHex(h) {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (p *jsonParser) num() bool {
	s, i := p.s, p.i
	if s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	p.i = i
	return true
}

// compactJSON removes insignificant whitespace (rare path: multi-line JSON text).
func compactJSON(dst, src []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, src); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}
