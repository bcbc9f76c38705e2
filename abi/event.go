package abi

import "time"

// Event is one analytics event in the standard columns (EventColumns).
type Event struct {
	UUID             [16]byte
	Event            string
	DistinctID       string
	PersonID         *[16]byte
	TeamID           int64
	Properties       string // JSON object text
	PersonProperties *string
	ElementsChain    string
	Timestamp        time.Time
	CreatedAt        *time.Time
	InsertedAt       time.Time
}

// AppendEvent appends e as one row. The writer's schema must begin with EventColumns;
// extra columns, if any, must be appended by the caller before EndRow.
func (w *BatchWriter) AppendEvent(e *Event) {
	w.AppendUUID(e.UUID)
	w.AppendString(e.Event)
	w.AppendString(e.DistinctID)
	if e.PersonID == nil {
		w.AppendNull()
	} else {
		w.AppendUUID(*e.PersonID)
	}
	w.AppendInt(e.TeamID)
	w.AppendString(e.Properties)
	if e.PersonProperties == nil {
		w.AppendNull()
	} else {
		w.AppendString(*e.PersonProperties)
	}
	w.AppendString(e.ElementsChain)
	w.AppendTime(e.Timestamp)
	if e.CreatedAt == nil {
		w.AppendNull()
	} else {
		w.AppendTime(*e.CreatedAt)
	}
	w.AppendTime(e.InsertedAt)
}

// ReadEvent fills e from a decoded row whose schema begins with EventColumns. Strings are
// copied; the event does not alias the batch.
func ReadEvent(vals []Value, e *Event) {
	copy(e.UUID[:], vals[0].Bytes)
	e.Event = string(vals[1].Bytes)
	e.DistinctID = string(vals[2].Bytes)
	e.PersonID = nil
	if !vals[3].Null {
		var p [16]byte
		copy(p[:], vals[3].Bytes)
		e.PersonID = &p
	}
	e.TeamID = vals[4].Int
	e.Properties = string(vals[5].Bytes)
	e.PersonProperties = nil
	if !vals[6].Null {
		s := string(vals[6].Bytes)
		e.PersonProperties = &s
	}
	e.ElementsChain = string(vals[7].Bytes)
	e.Timestamp = vals[8].Time()
	e.CreatedAt = nil
	if !vals[9].Null {
		t := vals[9].Time()
		e.CreatedAt = &t
	}
	e.InsertedAt = vals[10].Time()
}

// HasEventColumns reports whether a schema begins with the standard event columns.
func HasEventColumns(cols []Column) bool {
	if len(cols) < len(EventColumns) {
		return false
	}
	for i, c := range EventColumns {
		if cols[i] != c {
			return false
		}
	}
	return true
}
