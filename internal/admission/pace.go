package admission

import (
	"errors"
	"math"
	"time"
)

// ErrTooSlow: a body arrived more slowly than its Rule allows.
var ErrTooSlow = errors.New("admission: body arrives under the minimum data rate")

// Rule is a minimum data rate, as Apache's mod_reqtimeout minrate has it, over a sliding window:
// from Grace on, at every moment, the bytes that arrived within the last Window (or since the
// start, while the body is younger than Window) must average at least BytesPerSecond.
type Rule struct {
	BytesPerSecond float64 // 0: no minimum
	Grace          time.Duration
	Window         time.Duration
}

// Off says that the rule asks for nothing.
func (r Rule) Off() bool { return r.BytesPerSecond <= 0 || r.Window <= 0 }

// slotsPerWindow is how finely Pace remembers arrivals: bytes are counted per slot of Window/20,
// as if they all came at the slot's last arrival, which errs for the client by at most a slot.
const slotsPerWindow = 20

// Pace follows one body's arrivals against a Rule. It keeps no clock: times are durations
// since the body's start on the caller's clock (one that runs only while the client is being
// waited on, so that time spent sending upstream is not held against the client).
// A Pace is not safe for concurrent use.
type Pace struct {
	rule  Rule
	slot  time.Duration
	slots []arrival // within the window, oldest first
}

// arrival is the bytes of one slot and the time of the last of them.
type arrival struct {
	at    time.Duration
	bytes int64
}

// NewPace starts following a body at time 0.
func NewPace(r Rule) *Pace {
	return &Pace{rule: r, slot: max(r.Window/slotsPerWindow, time.Millisecond)}
}

// Add notes that n bytes arrived at time at. Times must not go backwards.
func (p *Pace) Add(at time.Duration, n int) {
	if n <= 0 || p.rule.Off() {
		return
	}
	drop := 0
	for drop < len(p.slots) && p.slots[drop].at <= at-p.rule.Window {
		drop++
	}
	p.slots = append(p.slots[:0], p.slots[drop:]...)
	if last := len(p.slots) - 1; last >= 0 && p.slots[last].at/p.slot == at/p.slot {
		p.slots[last].at = at
		p.slots[last].bytes += int64(n)
		return
	}
	p.slots = append(p.slots, arrival{at: at, bytes: int64(n)})
}

// Never is what Deadline returns for a rule that is off.
const Never = time.Duration(1<<63 - 1)

// Deadline is the earliest time, not before now, at which the body is under the rate if no
// more bytes arrive by then: more must arrive before it. A Deadline of now or earlier means the
// body is under the rate already.
func (p *Pace) Deadline(now time.Duration) time.Duration {
	if p.rule.Off() {
		return Never
	}
	w, rate := p.rule.Window, p.rule.BytesPerSecond
	cur := max(now, p.rule.Grace)
	// i is the oldest slot still in the window at cur; have is what the window holds.
	i := 0
	for i < len(p.slots) && p.slots[i].at <= cur-w {
		i++
	}
	var have int64
	for _, a := range p.slots[i:] {
		have += a.bytes
	}
	// have falls at each slot's exit; what is needed grows at rate until the window is full.
	// Between those events the margin falls linearly, or not at all, so the first moment it
	// goes below zero is found event by event.
	for {
		margin := float64(have) - rate*min(w, cur).Seconds()
		if margin < 0 {
			return cur
		}
		next := Never
		if i < len(p.slots) {
			next = p.slots[i].at + w
		}
		if cur < w {
			next = min(next, w)
			// The first nanosecond it is short, rounded up past float error.
			if secs := margin / rate; secs < (next - cur).Seconds() {
				if cross := cur + time.Duration(math.Ceil(secs*float64(time.Second))) + 1; cross < next {
					return cross
				}
			}
		}
		if next == Never {
			return Never // nothing left to lose and nothing more needed: only when rate*w is 0
		}
		cur = next
		for i < len(p.slots) && p.slots[i].at <= cur-w {
			have -= p.slots[i].bytes
			i++
		}
	}
}
