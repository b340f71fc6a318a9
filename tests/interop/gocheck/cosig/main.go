// Command cosig opens cosigned checkpoints with Go's golang.org/x/mod/sumdb/note, the outside
// reference that tests/witness/test_cosignature_go.py holds our tlog-cosignature lines to.
//
// To Go's note package a cosignature/v1 key (type 0x04) is not a key type it knows, but it takes
// any note.Verifier: this program supplies one per witness vkey, whose Verify checks plain
// Ed25519 over "cosignature/v1\ntime <T>\n" followed by the note text, with the signature being
// the 8-byte big-endian timestamp T and the 64-byte Ed25519 signature (c2sp.org/tlog-cosignature).
// The log's own key is an ordinary note.NewVerifier key. Nothing here knows the ledger.
//
// It reads a JSON array of requests on stdin,
//
//	{"note": "<signed note>", "log_vkey": "<note verifier key>", "witness_vkeys": ["<0x04 vkey>", ...]}
//
// and writes a JSON array of answers: {"ok": true, "verified": [names], "unverified": [names],
// "timestamps": {name: T}} or {"ok": false, "err": "..."}; a failed check is an answer.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type request struct {
	Note         string   `json:"note"`
	LogVkey      string   `json:"log_vkey"`
	WitnessVkeys []string `json:"witness_vkeys"`
}

type answer struct {
	OK         bool              `json:"ok"`
	Err        string            `json:"err,omitempty"`
	Verified   []string          `json:"verified"`
	Unverified []string          `json:"unverified"`
	Timestamps map[string]uint64 `json:"timestamps"`
}

// cosigVerifier is a note.Verifier for one Ed25519 cosignature/v1 key; it records the
// timestamp of the signature it last accepted.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
	seen map[string]uint64
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	var m bytes.Buffer
	m.WriteString("cosignature/v1\ntime " + strconv.FormatUint(t, 10) + "\n")
	m.Write(msg)
	if !ed25519.Verify(v.key, m.Bytes(), sig[8:]) {
		return false
	}
	v.seen[v.name] = t
	return true
}

func newCosigVerifier(vkey string, seen map[string]uint64) (*cosigVerifier, error) {
	name, rest, ok := strings.Cut(vkey, "+")
	if !ok {
		return nil, errors.New("vkey is not name+hash+key")
	}
	hash16, key64, ok := strings.Cut(rest, "+")
	if !ok || len(hash16) != 8 {
		return nil, errors.New("vkey is not name+hash+key")
	}
	raw, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return nil, errors.New("vkey is not a 0x04 Ed25519 key")
	}
	// The key hash is computed here from the spec, then compared with the one the vkey states.
	h := sha256.Sum256(append([]byte(name+"\n\x04"), raw[1:]...))
	want := binary.BigEndian.Uint32(h[:4])
	got, err := hex.DecodeString(hash16)
	if err != nil || binary.BigEndian.Uint32(got) != want {
		return nil, fmt.Errorf("vkey hash %s is not SHA-256(name || 0x0A || 0x04 || key)[:4] = %08x", hash16, want)
	}
	return &cosigVerifier{name: name, hash: want, key: ed25519.PublicKey(raw[1:]), seen: seen}, nil
}

func check(r request) answer {
	seen := map[string]uint64{}
	logV, err := note.NewVerifier(r.LogVkey)
	if err != nil {
		return answer{Err: "log vkey: " + err.Error()}
	}
	vs := []note.Verifier{logV}
	for _, k := range r.WitnessVkeys {
		v, err := newCosigVerifier(k, seen)
		if err != nil {
			return answer{Err: "witness vkey: " + err.Error()}
		}
		vs = append(vs, v)
	}
	n, err := note.Open([]byte(r.Note), note.VerifierList(vs...))
	if err != nil {
		return answer{Err: err.Error()}
	}
	a := answer{OK: true, Verified: []string{}, Unverified: []string{}, Timestamps: seen}
	for _, s := range n.Sigs {
		a.Verified = append(a.Verified, s.Name)
	}
	for _, s := range n.UnverifiedSigs {
		a.Unverified = append(a.Unverified, s.Name)
	}
	return a
}

func main() {
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		fmt.Fprintln(os.Stderr, "cosig: bad input:", err)
		os.Exit(2)
	}
	out := make([]answer, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, check(r))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
