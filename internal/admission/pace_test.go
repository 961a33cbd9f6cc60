package admission

import (
	"testing"
	"time"
)

// defaultRule is the server's default: 8 KiB/s over 20 s after 10 s.
var defaultRule = Rule{BytesPerSecond: 8 << 10, Grace: 10 * time.Second, Window: 20 * time.Second}

// feed sends total bytes in pieces of piece, one every gap, on a fake clock, and returns the
// time at which the pace first said the body was too slow (or -1 if never).
func feed(r Rule, total, piece int, gap time.Duration) time.Duration {
	p := NewPace(r)
	now := time.Duration(0)
	for sent := 0; sent < total; sent += piece {
		// Nothing arrives until now+gap: the body fails if its deadline comes first.
		if d := p.Deadline(now); d < now+gap {
			return d
		}
		now += gap
		p.Add(now, piece)
	}
	return -1
}

func TestPhoneOn3GCompletes(t *testing.T) {
	// 40 KB/s in 4 KB reads, for 10 MB: 250 s of body.
	if at := feed(defaultRule, 10_000_000, 4000, 100*time.Millisecond); at >= 0 {
		t.Fatalf("a 40 KB/s client was cut at %s", at)
	}
	// Bursty: 200 KB every 5 s is 40 KB/s on average too.
	if at := feed(defaultRule, 10_000_000, 200_000, 5*time.Second); at >= 0 {
		t.Fatalf("a bursty 40 KB/s client was cut at %s", at)
	}
}

func TestTrickleIsCut(t *testing.T) {
	// One byte every 50 ms is 20 B/s: it passes the grace, then falls under the rate at once.
	at := feed(defaultRule, 1<<20, 1, 50*time.Millisecond)
	if at != defaultRule.Grace {
		t.Fatalf("a 20 B/s trickle was cut at %s, want at the end of the grace, %s", at, defaultRule.Grace)
	}
	// 4 KiB/s: half the rate.
	at = feed(defaultRule, 1<<20, 4<<10, time.Second)
	if at != defaultRule.Grace {
		t.Fatalf("a 4 KiB/s body was cut at %s, want %s", at, defaultRule.Grace)
	}
}

func TestJustOverTheRatePasses(t *testing.T) {
	// 9 KiB once a second: just before each arrival the average is at least 8 KiB/s.
	if at := feed(defaultRule, 4<<20, 9<<10, time.Second); at >= 0 {
		t.Fatalf("a body at 9 KiB/s was cut at %s", at)
	}
	// 7 KiB/s is not enough.
	if at := feed(defaultRule, 4<<20, 7<<10, time.Second); at < 0 {
		t.Fatal("a body at 7 KiB/s was never cut")
	}
}

func TestDeadlineAfterSilence(t *testing.T) {
	p := NewPace(defaultRule)
	// 400 KiB in the first second is 50 s worth at 8 KiB/s, but only a window's worth counts.
	p.Add(time.Second, 400<<10)
	// The bytes leave the window at 21 s; until then the window holds 400 KiB ≥ 160 KiB.
	if d := p.Deadline(2 * time.Second); d != 21*time.Second {
		t.Fatalf("deadline %s, want 21s, when the only bytes leave the window", d)
	}
	// Before the grace, nothing is due before the grace ends, whatever arrived.
	q := NewPace(defaultRule)
	q.Add(time.Second, 1)
	if d := q.Deadline(time.Second); d != defaultRule.Grace {
		t.Fatalf("deadline %s, want the end of the grace", d)
	}
	// 40 KiB by 10 s: at 8 KiB/s that lasts until 5 s … so the grace's end is due now.
	// 120 KiB by 10 s: enough for 15 s, while the window is still filling.
	r := NewPace(defaultRule)
	r.Add(9*time.Second, 120<<10)
	if d := r.Deadline(10 * time.Second); d < 15*time.Second || d > 15*time.Second+time.Microsecond {
		t.Fatalf("deadline %s, want 15s", d)
	}
}

func TestRuleOff(t *testing.T) {
	p := NewPace(Rule{})
	p.Add(time.Second, 1)
	if d := p.Deadline(time.Hour); d != Never {
		t.Fatalf("deadline %s with no rule", d)
	}
}

// A trickle of one byte per read is cut although every read brings something: the deadline
// is computed from what the window holds, never from the last read.
func TestOneBytePerReadIsCut(t *testing.T) {
	r := Rule{BytesPerSecond: 1000, Grace: time.Second, Window: 2 * time.Second}
	p := NewPace(r)
	now := time.Duration(0)
	for i := 0; i < 10_000; i++ {
		d := p.Deadline(now)
		if d <= now+10*time.Millisecond {
			if d < r.Grace {
				t.Fatalf("cut at %s, inside the grace", d)
			}
			return
		}
		now += 10 * time.Millisecond // 100 B/s
		p.Add(now, 1)
	}
	t.Fatal("a 100 B/s trickle under a 1000 B/s rule was never cut")
}

func FuzzPaceDeadline(f *testing.F) {
	f.Add(uint16(100), uint16(3), uint16(10))
	f.Fuzz(func(t *testing.T, gapMs, piece, steps uint16) {
		r := Rule{BytesPerSecond: 1000, Grace: time.Second, Window: 2 * time.Second}
		p := NewPace(r)
		now := time.Duration(0)
		for i := 0; i < int(steps)%200; i++ {
			d := p.Deadline(now)
			if d < now && d < r.Grace {
				t.Fatalf("deadline %s before now %s and inside the grace", d, now)
			}
			// The deadline is honest: at it, the window is short; just before it, not.
			if d != Never && d > now {
				if !short(p, r, d) || short(p, r, d-time.Millisecond) && d-time.Millisecond >= max(now, r.Grace) {
					t.Fatalf("deadline %s is not where the window falls short (now %s)", d, now)
				}
			}
			now += time.Duration(gapMs%500) * time.Millisecond
			p.Add(now, int(piece%5000))
		}
	})
}

// short says, the slow way, whether the window at t (with no more bytes) holds too little.
func short(p *Pace, r Rule, t time.Duration) bool {
	var have int64
	for _, a := range p.slots {
		if a.at > t-r.Window {
			have += a.bytes
		}
	}
	return float64(have) < r.BytesPerSecond*min(r.Window, t).Seconds()
}
