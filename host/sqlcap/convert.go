package sqlcap

import (
	"encoding/hex"
	"strconv"

	"github.com/sluicehq/sluice/abi"
)

// convFunc converts one non-null batch value into what the driver encodes for the target
// column. Byte slices alias the batch, which outlives the load.
type convFunc func(v abi.Value) (any, error)

func convString(v abi.Value) (any, error)   { return string(v.Bytes), nil }
func convBytes(v abi.Value) (any, error)    { return v.Bytes, nil }
func convInt(v abi.Value) (any, error)      { return v.Int, nil }
func convIntText(v abi.Value) (any, error)  { return strconv.FormatInt(v.Int, 10), nil }
func convTime(v abi.Value) (any, error)     { return v.Time(), nil }
func convTimeText(v abi.Value) (any, error) { return v.Time().Format(timeText), nil }
func convFloat(v abi.Value) (any, error)    { return v.Float, nil }
func convFloatText(v abi.Value) (any, error) {
	return strconv.FormatFloat(v.Float, 'g', -1, 64), nil
}
func convBool(v abi.Value) (any, error) { return v.Int != 0, nil }
func convBoolText(v abi.Value) (any, error) {
	return strconv.FormatBool(v.Int != 0), nil
}

// convUUID: the 16 bytes (postgres uuid).
func convUUID(v abi.Value) (any, error) { return [16]byte(v.Bytes), nil }

// convUUIDString: the canonical lower-case text.
func convUUIDString(v abi.Value) (any, error) { return uuidString([16]byte(v.Bytes)), nil }

// convUUIDText: a string column's text parsed as a uuid.
func convUUIDText(v abi.Value) (any, error) {
	u, err := parseUUID(string(v.Bytes))
	if err != nil {
		return nil, err
	}
	return u, nil
}

// timeText is the text of a timestamp loaded into a text column: RFC 3339, 6 fractional
// digits, Z.
const timeText = "2006-01-02T15:04:05.000000Z07:00"

func uuidString(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, errBadUUID(s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, errBadUUID(s)
	}
	return u, nil
}

func errBadUUID(s string) error { return badArg("%q is not a uuid", truncate(s, 40)) }
