// Command gocheck answers questions about signed notes and RFC 6962/9162 trees using Go's own
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, the outside reference that
// tests/test_go_interop.py holds client/note.py and client/merkle.py to.
//
// It reads a JSON array of requests on stdin and writes a JSON array of responses, one per
// request, on stdout. Bytes travel as standard base64 (encoding/json's []byte encoding).
// A failed check is an answer ({"ok": false, "err": ...}), not a process failure.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Cmd        string     `json:"cmd"`
	Note       []byte     `json:"note"`
	Text       string     `json:"text"`
	Name       string     `json:"name"`
	Key        string     `json:"key"`
	Verifiers  []string   `json:"verifiers"`
	Signers    []string   `json:"signers"`
	LeafHashes [][]byte   `json:"leaf_hashes"`
	Proof      [][]byte   `json:"proof"`
	Index      int64      `json:"index"`
	Size       int64      `json:"size"`
	Size1      int64      `json:"size1"`
	Size2      int64      `json:"size2"`
	Leaf       []byte     `json:"leaf"`
	Root       []byte     `json:"root"`
	Root1      []byte     `json:"root1"`
	Root2      []byte     `json:"root2"`
	Sizes      []int64    `json:"sizes"`
	Records    [][2]int64 `json:"records"` // (index, size) pairs
	Trees      [][2]int64 `json:"trees"`   // (size1, size2) pairs
}

type signature struct {
	Name   string `json:"name"`
	KeyID  string `json:"key_id"`
	Base64 string `json:"base64"`
}

type response struct {
	OK           bool        `json:"ok"`
	Err          string      `json:"err,omitempty"`
	Text         string      `json:"text,omitempty"`
	Sigs         []signature `json:"sigs,omitempty"`
	Unverified   []signature `json:"unverified,omitempty"`
	Note         []byte      `json:"note,omitempty"`
	SignerKey    string      `json:"signer_key,omitempty"`
	VerifierKey  string      `json:"verifier_key,omitempty"`
	Name         string      `json:"name,omitempty"`
	KeyID        string      `json:"key_id,omitempty"`
	Roots        [][]byte    `json:"roots,omitempty"`
	RecordProofs [][][]byte  `json:"record_proofs,omitempty"`
	TreeProofs   [][][]byte  `json:"tree_proofs,omitempty"`
	TreeSize     int64       `json:"tree_size"`
	Root         []byte      `json:"root,omitempty"`
}

func keyID(h uint32) string {
	return hex.EncodeToString([]byte{byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)})
}

func sigs(list []note.Signature) []signature {
	out := make([]signature, 0, len(list))
	for _, s := range list {
		out = append(out, signature{Name: s.Name, KeyID: keyID(s.Hash), Base64: s.Base64})
	}
	return out
}

func toHash(b []byte) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("hash is %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

func toHashes(list [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, b := range list {
		h, err := toHash(b)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func fromHashes(list []tlog.Hash) [][]byte {
	out := make([][]byte, len(list))
	for i := range list {
		out[i] = append([]byte{}, list[i][:]...)
	}
	return out
}

// store holds every hash tlog.StoredHashes asks a log to keep, at its StoredHashIndex.
type store []tlog.Hash

func (s store) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

func build(leaves []tlog.Hash) (store, error) {
	var s store
	for n, h := range leaves {
		hashes, err := tlog.StoredHashesForRecordHash(int64(n), h, s)
		if err != nil {
			return nil, err
		}
		s = append(s, hashes...)
	}
	return s, nil
}

func handle(r request) (resp response, err error) {
	switch r.Cmd {
	case "open":
		var vs []note.Verifier
		for _, k := range r.Verifiers {
			v, err := note.NewVerifier(k)
			if err != nil {
				return resp, fmt.Errorf("verifier %q: %w", k, err)
			}
			vs = append(vs, v)
		}
		n, err := note.Open(r.Note, note.VerifierList(vs...))
		if err != nil {
			return resp, err
		}
		resp.Text, resp.Sigs, resp.Unverified = n.Text, sigs(n.Sigs), sigs(n.UnverifiedSigs)
	case "sign":
		var ss []note.Signer
		for _, k := range r.Signers {
			s, err := note.NewSigner(k)
			if err != nil {
				return resp, err
			}
			ss = append(ss, s)
		}
		msg, err := note.Sign(&note.Note{Text: r.Text}, ss...)
		if err != nil {
			return resp, err
		}
		resp.Note = msg
	case "generate":
		skey, vkey, err := note.GenerateKey(rand.Reader, r.Name)
		if err != nil {
			return resp, err
		}
		resp.SignerKey, resp.VerifierKey = skey, vkey
	case "verifier":
		v, err := note.NewVerifier(r.Key)
		if err != nil {
			return resp, err
		}
		resp.Name, resp.KeyID = v.Name(), keyID(v.KeyHash())
	case "signer":
		s, err := note.NewSigner(r.Key)
		if err != nil {
			return resp, err
		}
		resp.Name, resp.KeyID = s.Name(), keyID(s.KeyHash())
	case "tree":
		// Roots and proofs Go computes over these leaf hashes, for the requested sizes and pairs.
		leaves, err := toHashes(r.LeafHashes)
		if err != nil {
			return resp, err
		}
		s, err := build(leaves)
		if err != nil {
			return resp, err
		}
		for _, n := range r.Sizes {
			h, err := tlog.TreeHash(n, s)
			if err != nil {
				return resp, err
			}
			resp.Roots = append(resp.Roots, h[:])
		}
		for _, q := range r.Records {
			p, err := tlog.ProveRecord(q[1], q[0], s)
			if err != nil {
				return resp, err
			}
			resp.RecordProofs = append(resp.RecordProofs, fromHashes(p))
		}
		for _, q := range r.Trees {
			p, err := tlog.ProveTree(q[1], q[0], s)
			if err != nil {
				return resp, err
			}
			resp.TreeProofs = append(resp.TreeProofs, fromHashes(p))
		}
	case "check_record":
		p, err := toHashes(r.Proof)
		if err != nil {
			return resp, err
		}
		root, err := toHash(r.Root)
		if err != nil {
			return resp, err
		}
		leaf, err := toHash(r.Leaf)
		if err != nil {
			return resp, err
		}
		if err := tlog.CheckRecord(p, r.Size, root, r.Index, leaf); err != nil {
			return resp, err
		}
	case "check_tree":
		p, err := toHashes(r.Proof)
		if err != nil {
			return resp, err
		}
		root1, err := toHash(r.Root1)
		if err != nil {
			return resp, err
		}
		root2, err := toHash(r.Root2)
		if err != nil {
			return resp, err
		}
		if err := tlog.CheckTree(p, r.Size2, root2, r.Size1, root1); err != nil {
			return resp, err
		}
	case "record_hash":
		// tlog.RecordHash of the leaf's bytes (an empty leaf is a valid record: RFC 9162 2.1.1).
		h := tlog.RecordHash(r.Leaf)
		resp.Root = h[:]
	case "scan_lines":
		// The lines bufio.Scanner reads from the note's bytes with its default 64 KiB token limit.
		sc := bufio.NewScanner(bytes.NewReader(r.Note))
		var n int64
		for sc.Scan() {
			n++
		}
		if err := sc.Err(); err != nil {
			return resp, err
		}
		resp.TreeSize = n
	case "format_tree":
		root, err := toHash(r.Root)
		if err != nil {
			return resp, err
		}
		resp.Text = string(tlog.FormatTree(tlog.Tree{N: r.Size, Hash: root}))
	case "parse_tree":
		tree, err := tlog.ParseTree([]byte(r.Text))
		if err != nil {
			return resp, err
		}
		resp.TreeSize, resp.Root = tree.N, tree.Hash[:]
	default:
		return resp, errors.New("unknown command " + r.Cmd)
	}
	return resp, nil
}

func main() {
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		fmt.Fprintln(os.Stderr, "gocheck: bad input:", err)
		os.Exit(2)
	}
	out := make([]response, len(reqs))
	for i, r := range reqs {
		resp, err := handle(r)
		if err != nil {
			resp = response{Err: err.Error()}
		} else {
			resp.OK = true
		}
		out[i] = resp
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "gocheck: write:", err)
		os.Exit(2)
	}
}
