package conformance

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// Events returns n deterministic events in the event schema, each about size bytes once
// encoded (the properties JSON fills the rest). seed varies the uuids.
func Events(n, size, seed int) []abi.Event {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	evs := make([]abi.Event, n)
	for i := range evs {
		e := &evs[i]
		binary.BigEndian.PutUint64(e.UUID[:8], uint64(seed)<<32|uint64(i))
		binary.BigEndian.PutUint64(e.UUID[8:], 0x8000000000000000|uint64(i))
		e.UUID[6] = e.UUID[6]&0x0f | 0x40
		e.Event = "$pageview"
		e.DistinctID = fmt.Sprintf("user-%d", i%97)
		e.TeamID = 1
		props := fmt.Sprintf(`{"$current_url":"https://example.com/p/%d","$browser":"Firefox","n":%d,"pad":"`, i, i)
		pad := max(0, size-len(props)-150)
		e.Properties = props + strings.Repeat("x", pad) + `"}`
		if i%3 == 0 {
			pp := `{"email":"u` + fmt.Sprint(i) + `@example.com"}`
			e.PersonProperties = &pp
			p := e.UUID
			p[0] ^= 0xff
			e.PersonID = &p
		}
		e.ElementsChain = "div:nth-child=1"
		e.Timestamp = base.Add(time.Duration(i) * time.Millisecond)
		e.InsertedAt = e.Timestamp.Add(time.Second)
		if i%2 == 0 {
			c := e.Timestamp
			e.CreatedAt = &c
		}
	}
	return evs
}

// Batch encodes events as one SLB1 batch in the event schema.
func Batch(evs []abi.Event) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range evs {
		w.AppendEvent(&evs[i])
		w.EndRow()
	}
	return w.Bytes()
}
