package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestLocalCommitIsAtomic(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := NewLocalDir(root, "exports/team-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := st.Create(ctx, "2024/01/01/part-0.jsonl", ObjectOptions{ContentType: "application/jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort(ctx)
	data := bytes.Repeat([]byte("{\"event\":\"x\"}\n"), 1000)
	for chunk := range slices.Chunk(data, 777) {
		if _, err := u.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	final := filepath.Join(root, "exports/team-1/2024/01/01/part-0.jsonl")
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("object visible before Commit: %v", err)
	}
	if u.Written() != int64(len(data)) {
		t.Fatalf("Written = %d", u.Written())
	}
	info, err := u.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	if info.Key != "exports/team-1/2024/01/01/part-0.jsonl" || info.Bytes != int64(len(data)) || info.ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("info = %+v", info)
	}
	got, err := os.ReadFile(final)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}
	// No temporary file is left beside the object.
	entries, _ := os.ReadDir(filepath.Dir(final))
	if len(entries) != 1 {
		t.Fatalf("dir has %v", entries)
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if _, err := os.Stat(final); err != nil {
		t.Fatalf("Abort after Commit removed the object: %v", err)
	}
	if _, err := u.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Commit: %v", err)
	}

	// Overwriting an existing object replaces it whole (retried runs).
	u2, _ := st.Create(ctx, "2024/01/01/part-0.jsonl", ObjectOptions{})
	u2.Write([]byte("second"))
	if _, err := u2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(final); string(got) != "second" {
		t.Fatalf("overwrite: %q", got)
	}
}

func TestLocalAbortLeavesNothing(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := NewLocalDir(root, "p")
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.Create(ctx, "a/b/c.jsonl", ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("partial data"))
	if tree := listTree(t, filepath.Join(root, "p")); len(tree) == 0 {
		t.Fatal("expected a temp file while writing")
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if tree := listTree(t, filepath.Join(root, "p")); len(tree) != 0 {
		t.Fatalf("left behind: %v", tree)
	}
	if _, err := u.Commit(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Abort: %v", err)
	}

	// Directories that existed before the upload are kept.
	os.MkdirAll(filepath.Join(root, "p/keep"), 0o755)
	u, _ = st.Create(ctx, "keep/x", ObjectOptions{})
	u.Abort(ctx)
	if tree := listTree(t, filepath.Join(root, "p")); len(tree) != 1 || tree[0] != "keep" {
		t.Fatalf("tree = %v", tree)
	}
}

func TestLocalRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(filepath.Join(root, "p"), 0o755)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "victim"), []byte("keep me"), 0o644)

	for _, prefix := range []string{"../outside", "/abs", "p/../../outside"} {
		if _, err := NewLocalDir(root, prefix); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewLocalDir(prefix %q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
	st, err := NewLocalDir(root, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../x", "../../outside/x", "/etc/passwd", "a/../../x"} {
		if _, err := st.Create(ctx, key, ObjectOptions{}); !errors.Is(err, ErrInvalidKey) || Classify(err) != Fatal {
			t.Errorf("Create(%q) = %v, want ErrInvalidKey", key, err)
		}
	}

	// A directory symlink pointing outside the bound directory.
	if err := os.Symlink(outside, filepath.Join(root, "p", "link")); err != nil {
		t.Fatal(err)
	}
	// A symlink inside the prefix that points to the root's parent.
	if err := os.Symlink("../..", filepath.Join(root, "p", "up")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"link/x", "link/new/x", "up/outside/x"} {
		u, err := st.Create(ctx, key, ObjectOptions{})
		if err == nil {
			u.Write([]byte("escaped"))
			u.Commit(ctx)
			t.Errorf("Create(%q) through a symlink succeeded", key)
			continue
		}
		if !errors.Is(err, ErrInvalidKey) || Classify(err) != Fatal {
			t.Errorf("Create(%q) = %v (class %v), want ErrInvalidKey", key, err, Classify(err))
		}
	}
	// A file symlink as the object itself: the rename replaces the link,
	// it never writes through it.
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(root, "p", "obj")); err != nil {
		t.Fatal(err)
	}
	u, err := st.Create(ctx, "obj", ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("new"))
	if _, err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "victim")); string(got) != "keep me" {
		t.Fatalf("victim overwritten: %q", got)
	}
	if tree := listTree(t, outside); len(tree) != 1 {
		t.Fatalf("outside dir changed: %v", tree)
	}
	// The prefix itself being a symlink out of root is refused too.
	if err := os.Symlink(outside, filepath.Join(root, "evilprefix")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocalDir(root, "evilprefix"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("symlinked prefix: %v", err)
	}
}

func TestLocalCheck(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := NewLocalDir(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if tree := listTree(t, root); len(tree) != 0 {
		t.Fatalf("Check left %v", tree)
	}
	if _, err := NewLocalDir(filepath.Join(root, "missing"), ""); Classify(err) != NotFound {
		t.Fatalf("missing root: %v (%v)", err, Classify(err))
	}
	os.RemoveAll(root)
	if err := st.Check(ctx); Classify(err) != NotFound {
		t.Fatalf("Check on removed root: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Check(cctx); Classify(err) != Cancelled {
		t.Fatalf("cancelled: %v", err)
	}
}
