package alert

import (
	"time"

	"github.com/sluicehq/sluice/storage"
)

// The rate limit: at most one alert per export per period. The first alert of a period
// claims it (the slot: LastAlertAt, SlotKey); an alert arriving within the period of
// another is suppressed and counted; the next alert sent says how many were. The state is
// one row per export, read and written under a lock (storage.UpdateAlertState), so it
// holds across hosts and restarts.

type verdict int

const (
	verdictSend      verdict = iota // deliver it (again, for a retry of the slot's holder)
	verdictSuppress                 // another alert holds the period
	verdictDuplicate                // this alert was delivered already
)

// claim decides on the alert key at now, and changes s accordingly (changed: s must be
// stored). An auto-pause (force) is always sent: it happens once until a person unpauses
// the export, and it is the alert that asks for action. carried is the count of
// suppressed alerts the sent alert reports.
func claim(s *storage.AlertState, key string, force bool, now time.Time, period time.Duration) (v verdict, carried int, changed bool) {
	if s.SlotKey == key {
		if s.Delivered {
			return verdictDuplicate, 0, false
		}
		return verdictSend, s.Suppressed, false // a retry of the period's alert
	}
	if force || s.LastAlertAt == nil || !now.Before(s.LastAlertAt.Add(period)) {
		t := now.UTC()
		s.LastAlertAt, s.SlotKey, s.Delivered = &t, key, false
		return verdictSend, s.Suppressed, true
	}
	s.Suppressed++
	return verdictSuppress, 0, true
}

// delivered records that key reached its receiver, reporting carried suppressed alerts.
func delivered(s *storage.AlertState, key string, carried int) bool {
	if s.SlotKey != key {
		return false // an auto-pause took the slot meanwhile; its alert counts on
	}
	s.Delivered = true
	s.Suppressed = max(0, s.Suppressed-carried)
	return true
}

// gaveUp records that key will not be delivered: the period is free again for the next
// alert, which counts this one among those not sent.
func gaveUp(s *storage.AlertState, key string) bool {
	s.Suppressed++
	if s.SlotKey == key && !s.Delivered {
		s.LastAlertAt, s.SlotKey = nil, ""
	}
	return true
}
