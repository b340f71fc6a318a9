// Command tiles is a tlog-tiles client built on Go's golang.org/x/mod/sumdb/tlog and note, the
// outside reference that tests/tiles/test_tiles_go_nginx.py holds our tiles (served by nginx from
// `provenance serve --tiles-dir`) to. It knows nothing of the ledger but the C2SP specs.
//
// It reads one JSON request on stdin:
//
//	{"base": "http://127.0.0.1:PORT", "vkey": "<note verifier key>", "indices": [...],
//	 "old": [{"size": N, "root": "<base64>"}, ...]}
//
// fetches BASE/checkpoint, verifies its signature with the key (note.Open), and then, through
// tlog.TileHashReader over the tiles it fetches (each tile authenticated against the checkpoint's
// root by the reader itself):
//   - for every index, the entry from its entry bundle, and its inclusion proof
//     (tlog.ProveRecord, tlog.CheckRecord), and that the level-0 tile holds its record hash;
//   - for every old tree, its hash (tlog.TreeHash) and a consistency proof to the checkpoint
//     (tlog.ProveTree, tlog.CheckTree).
//
// Go names tiles tile/8/<L>/<N>[.p/<W>] (the height in the path) and its record tiles
// tile/8/data/<N>; C2SP tlog-tiles names them tile/<L>/<N>[.p/<W>] and tile/entries/<N>. The
// tileReader below is the small adapter that maps one onto the other. It writes one JSON answer
// on stdout; a failed check is an answer, not a process failure.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type oldTree struct {
	Size int64  `json:"size"`
	Root []byte `json:"root"`
}

type request struct {
	Base    string    `json:"base"`
	VKey    string    `json:"vkey"`
	Indices []int64   `json:"indices"`
	Old     []oldTree `json:"old"`
}

type record struct {
	Index int64  `json:"index"`
	Entry []byte `json:"entry"`
	OK    bool   `json:"ok"`
	Err   string `json:"err,omitempty"`
}

type tree struct {
	Size int64  `json:"size"`
	OK   bool   `json:"ok"`
	Err  string `json:"err,omitempty"`
}

type answer struct {
	Origin  string   `json:"origin"`
	Size    int64    `json:"size"`
	Root    []byte   `json:"root"`
	Err     string   `json:"err,omitempty"`
	Records []record `json:"records"`
	Trees   []tree   `json:"trees"`
	Fetched []string `json:"fetched"`
}

// c2spPath maps Go's tile path to the C2SP tlog-tiles one.
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	if t.L == -1 {
		return "tile/entries/" + strings.TrimPrefix(p, fmt.Sprintf("tile/%d/data/", t.H))
	}
	return "tile/" + strings.TrimPrefix(p, fmt.Sprintf("tile/%d/", t.H))
}

type tileReader struct {
	base    string
	mu      sync.Mutex
	fetched []string
}

func (r *tileReader) get(path string) ([]byte, error) {
	r.mu.Lock()
	r.fetched = append(r.fetched, path)
	r.mu.Unlock()
	resp, err := http.Get(r.base + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// entry reads entry index from its C2SP entry bundle (big-endian uint16 length before each entry).
func (r *tileReader) entry(index, size int64) ([]byte, error) {
	n := index / 256
	w := size - n*256
	if w > 256 {
		w = 256
	}
	data, err := r.get(c2spPath(tlog.Tile{H: 8, L: -1, N: n, W: int(w)}))
	if err != nil {
		return nil, err
	}
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("bundle ends inside a length")
		}
		l := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+l {
			return nil, errors.New("bundle ends inside an entry")
		}
		entries = append(entries, data[2:2+l])
		data = data[2+l:]
	}
	if int64(len(entries)) != w {
		return nil, fmt.Errorf("bundle holds %d entries, want %d", len(entries), w)
	}
	return entries[index%256], nil
}

func checkpoint(r *tileReader, vkey string) (string, tlog.Tree, error) {
	raw, err := r.get("checkpoint")
	if err != nil {
		return "", tlog.Tree{}, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", tlog.Tree{}, err
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return "", tlog.Tree{}, err
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return "", tlog.Tree{}, errors.New("checkpoint has fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return "", tlog.Tree{}, fmt.Errorf("bad checkpoint size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return "", tlog.Tree{}, fmt.Errorf("bad checkpoint root %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], tlog.Tree{N: size, Hash: h}, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		os.Exit(2)
	}
	r := &tileReader{base: strings.TrimSuffix(req.Base, "/")}
	ans := answer{Records: []record{}, Trees: []tree{}}
	origin, t, err := checkpoint(r, req.VKey)
	if err != nil {
		ans.Err = err.Error()
	} else {
		ans.Origin, ans.Size, ans.Root = origin, t.N, t.Hash[:]
		thr := tlog.TileHashReader(t, r)
		for _, index := range req.Indices {
			rec := record{Index: index}
			entry, err := r.entry(index, t.N)
			if err == nil {
				rec.Entry = entry
				var p tlog.RecordProof
				p, err = tlog.ProveRecord(t.N, index, thr)
				if err == nil {
					err = tlog.CheckRecord(p, t.N, t.Hash, index, tlog.RecordHash(entry))
				}
			}
			if err == nil {
				var hs []tlog.Hash
				hs, err = thr.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
				if err == nil && hs[0] != tlog.RecordHash(entry) {
					err = errors.New("the level-0 tile does not hold the bundle entry's record hash")
				}
			}
			rec.OK, rec.Err = err == nil, errText(err)
			ans.Records = append(ans.Records, rec)
		}
		for _, old := range req.Old {
			tr := tree{Size: old.Size}
			var want tlog.Hash
			copy(want[:], old.Root)
			th, err := tlog.TreeHash(old.Size, thr)
			if err == nil && th != want {
				err = errors.New("tlog.TreeHash of the old size differs from its root")
			}
			if err == nil {
				var p tlog.TreeProof
				p, err = tlog.ProveTree(t.N, old.Size, thr)
				if err == nil {
					err = tlog.CheckTree(p, t.N, t.Hash, old.Size, want)
				}
			}
			tr.OK, tr.Err = err == nil, errText(err)
			ans.Trees = append(ans.Trees, tr)
		}
	}
	ans.Fetched = r.fetched
	if err := json.NewEncoder(os.Stdout).Encode(ans); err != nil {
		os.Exit(1)
	}
}
