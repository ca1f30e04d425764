package testenv

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestBufferConcurrentWritesAllArrive(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(&b, "w%d line %d\n", w, i)
				_ = b.String()
				_ = b.Lines()
			}
		}()
	}
	wg.Wait()
	lines := b.Lines()
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	if !slices.Contains(lines, "w7 line 99") {
		t.Fatal("a writer's last line is missing")
	}
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Fatalf("String has %d newlines, want 800", got)
	}
}

func TestBufferLinesKeepsUnfinishedLast(t *testing.T) {
	var b Buffer
	if got := b.Lines(); got != nil {
		t.Fatalf("empty Lines = %q, want nil", got)
	}
	b.Write([]byte("one\ntw"))
	b.Write([]byte("o\nthr"))
	if got, want := b.Lines(), []string{"one", "two", "thr"}; !slices.Equal(got, want) {
		t.Fatalf("Lines = %q, want %q", got, want)
	}
	if got, want := b.String(), "one\ntwo\nthr"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}
