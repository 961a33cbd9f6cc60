package resumable

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"cloudinary-upload-api/internal/ratelimit"
	"cloudinary-upload-api/internal/ratelimit/redistest"
	"cloudinary-upload-api/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chunkLog is a store that records the chunks it is sent and joins them.
type chunkLog struct {
	got    bytes.Buffer
	ranges []string
}

func (l *chunkLog) send(_ context.Context, offset int64, chunk []byte, total int64) (json.RawMessage, error) {
	if offset != int64(l.got.Len()) {
		return nil, fmt.Errorf("chunk at %d, want %d", offset, l.got.Len())
	}
	l.got.Write(chunk)
	l.ranges = append(l.ranges, fmt.Sprintf("%d-%d/%d", offset, offset+int64(len(chunk))-1, total))
	if total >= 0 {
		return json.RawMessage(fmt.Sprintf(`{"bytes":%d}`, total)), nil
	}
	return nil, nil
}

func TestCutterCutsChunksAndSendsTheTotalLast(t *testing.T) {
	for _, tc := range []struct {
		size   int
		want   []string
		reader func(io.Reader) io.Reader
	}{
		{25, []string{"0-9/10"}, func(r io.Reader) io.Reader { return r }},
		{10, []string{"0-9/10"}, iotest.OneByteReader}, // exactly one chunk: the read-ahead says it is the last
		{4, []string{"0-3/-1", "4-7/-1", "8-9/10"}, iotest.HalfReader},
		{5, []string{"0-4/-1", "5-9/10"}, iotest.DataErrReader},
	} {
		log := &chunkLog{}
		var sent []int64
		c := &Cutter{Size: tc.size, Send: log.send, Sent: func(n int64) error { sent = append(sent, n); return nil }}
		res, err := c.Upload(context.Background(), tc.reader(bytes.NewReader([]byte("0123456789"))), 0)
		if err != nil || string(res) != `{"bytes":10}` {
			t.Fatalf("size %d: %s, %v", tc.size, res, err)
		}
		if fmt.Sprint(log.ranges) != fmt.Sprint(tc.want) || log.got.String() != "0123456789" {
			t.Errorf("size %d: ranges %v (want %v), bytes %q", tc.size, log.ranges, tc.want, log.got.String())
		}
		if len(sent) != len(tc.want)-1 {
			t.Errorf("size %d: Sent told %v", tc.size, sent)
		}
	}
}

func TestCutterResumesAtAnOffsetAndRefusesEmpty(t *testing.T) {
	log := &chunkLog{}
	log.got.WriteString("abcd")
	c := &Cutter{Size: 4, Send: log.send}
	if _, err := c.Upload(context.Background(), bytes.NewReader([]byte("efgh")), 4); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(log.ranges) != "[4-7/8]" {
		t.Errorf("ranges %v", log.ranges)
	}
	if _, err := (&Cutter{Size: 4, Send: log.send}).Upload(context.Background(), bytes.NewReader(nil), 0); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	broken := iotest.ErrReader(io.ErrUnexpectedEOF)
	if _, err := (&Cutter{Size: 4, Send: log.send}).Upload(context.Background(), broken, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("broken stream: %v", err)
	}
}

// budget is a store.Memory that counts.
type budget struct{ held, most, limit int64 }

func (b *budget) Grow(_ context.Context, n int64) error {
	if b.held+n > b.limit {
		return errors.New("spent")
	}
	b.held += n
	b.most = max(b.most, b.held)
	return nil
}
func (b *budget) Shrink() { b.held = 0 }

var _ store.Memory = (*budget)(nil)

func TestCutterReservesItsBufferAsItFills(t *testing.T) {
	b := &budget{limit: 1 << 30}
	log := &chunkLog{}
	c := &Cutter{Size: 3 * BlockBytes, Send: log.send, Memory: b}
	if _, err := c.Upload(context.Background(), bytes.NewReader(make([]byte, BlockBytes+10)), 0); err != nil {
		t.Fatal(err)
	}
	if b.most != 2*BlockBytes || b.held != 0 {
		t.Errorf("reserved at most %d (want %d), %d left held", b.most, 2*BlockBytes, b.held)
	}
	tight := &Cutter{Size: 3 * BlockBytes, Send: log.send, Memory: &budget{limit: BlockBytes}}
	if _, err := tight.Upload(context.Background(), bytes.NewReader(make([]byte, 2*BlockBytes)), 0); err == nil || err.Error() != "spent" {
		t.Errorf("over the budget: %v", err)
	}
}

func TestFeedJoinsWritesAndSettles(t *testing.T) {
	f := NewFeed()
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 3)
		for {
			n, err := f.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				f.End(nil)
				got <- all
				return
			}
		}
	}()
	for _, part := range []string{"hello ", "resumable ", "world"} {
		if n, err := f.Write([]byte(part)); n != len(part) || err != nil {
			t.Fatalf("write %q: %d, %v", part, n, err)
		}
		if err := f.Settle(); err != nil {
			t.Fatalf("settle: %v", err)
		}
	}
	f.Close()
	if s := string(<-got); s != "hello resumable world" {
		t.Errorf("read %q", s)
	}
	if _, err := f.Write([]byte("late")); !errors.Is(err, ErrFeedClosed) {
		t.Errorf("write after the end: %v", err)
	}
	if err := f.Settle(); !errors.Is(err, ErrFeedClosed) {
		t.Errorf("settle after the end: %v", err)
	}
}

func TestFeedWriteReturnsTheReadersFailure(t *testing.T) {
	f := NewFeed()
	bad := errors.New("pixel bomb")
	go func() {
		buf := make([]byte, 4)
		_, _ = f.Read(buf)
		f.End(bad)
	}()
	n, err := f.Write([]byte("0123456789"))
	if n != 4 || !errors.Is(err, bad) {
		t.Errorf("write: %d, %v", n, err)
	}
}

func testState(t *testing.T, st State) {
	ctx := context.Background()
	u := Upload{ID: NewID(), Owner: "addr:127.0.0.1", Length: 10, StoreID: NewID(), Delta: Unknown,
		Params: store.Params{PublicID: "a/b", Tags: []string{"x"}}, Expires: time.Now().Add(time.Hour)}
	if err := st.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.Stored, u.Delta = 5, 2
	if err := st.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, u.ID)
	if err != nil || got.Stored != 5 || got.Resumable() != 7 || got.Params.PublicID != "a/b" || got.Owner != u.Owner {
		t.Fatalf("get: %+v, %v", got, err)
	}
	unlock, err := st.Lock(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lock(ctx, u.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v", err)
	}
	unlock()
	unlock() // twice is harmless
	again, err := st.Lock(ctx, u.ID)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
	if err := st.Delete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, u.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if err := st.Save(ctx, u); !errors.Is(err, ErrNotFound) {
		t.Errorf("save after delete: %v", err)
	}
	old := Upload{ID: NewID(), StoreID: NewID(), Expires: time.Now().Add(-time.Second)}
	if err := st.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	swept, err := st.Expired(ctx, time.Now())
	if err != nil || len(swept) != 1 || swept[0].StoreID != old.StoreID {
		t.Errorf("expired: %+v, %v", swept, err)
	}
	if swept, _ := st.Expired(ctx, time.Now()); len(swept) != 0 {
		t.Errorf("swept twice: %+v", swept)
	}
}

func TestMemoryState(t *testing.T) { testState(t, NewMemory()) }

// redisClient is a client of a real redis-server of the test's own, closed at its cleanup.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	srv := redistest.Start(t)
	opt, err := ratelimit.ParseURL(srv.URL(), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestRedisState(t *testing.T) {
	client := redisClient(t)
	testState(t, NewRedis(client, "test:", 3*time.Second))
}

func TestRedisLockLapsesWhenItsHolderDies(t *testing.T) {
	client := redisClient(t)
	st := NewRedis(client, "test:", 300*time.Millisecond)
	ctx := context.Background()
	// A holder that died: its key, without the renewal, lapsing in a millisecond.
	if err := client.Set(ctx, "test:lock:x", "dead", time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		unlock, err := st.Lock(ctx, "x")
		if err == nil {
			unlock()
			break
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("the dead holder's lock never lapsed: %v", err)
		}
	}
	// A live holder's lock is renewed: its time to live goes up again.
	unlock, err := st.Lock(ctx, "y")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	first := client.PTTL(ctx, "test:lock:y").Val()
	for {
		ttl, err := client.PTTL(ctx, "test:lock:y").Result()
		if err != nil || ttl <= 0 || time.Now().After(deadline) {
			t.Fatalf("the live holder's lock lapsed or was never renewed: %v, %v", ttl, err)
		}
		if ttl > first {
			break
		}
		first = ttl
	}
}
