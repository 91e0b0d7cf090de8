// Command gen derives placement, hash and glob vectors for the hashring crate.
//
// It is an independent re-implementation, written for Ringest, of the placement
// rules Thanos Receive documents (hashmod, ketama with AZ spreading, and the
// labelpb.HashWithPrefix series hash), using github.com/cespare/xxhash/v2 (the
// hash library Thanos uses) and Go's own path/filepath.Match for tenant globs.
// Run ../regen.sh to rewrite the vector files.
package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

type endpoint struct {
	Address string `json:"address"`
	AZ      string `json:"az,omitempty"`
}

type ring struct {
	Name      string     `json:"name"`
	Algorithm string     `json:"algorithm"`
	RF        int        `json:"replication_factor"`
	Endpoints []endpoint `json:"endpoints"`
}

type label struct{ Name, Value string }

type placementCase struct {
	Ring     string      `json:"ring"`
	Tenant   string      `json:"tenant"`
	Labels   [][2]string `json:"labels"`
	Hash     string      `json:"hash"`
	Replicas []string    `json:"replicas"`
}

// seriesHash: xxhash64 of tenant, 0xff, then name, 0xff, value, 0xff for each label.
func seriesHash(tenant string, labels []label) uint64 {
	b := []byte(tenant)
	b = append(b, 0xff)
	for _, l := range labels {
		b = append(b, l.Name...)
		b = append(b, 0xff)
		b = append(b, l.Value...)
		b = append(b, 0xff)
	}
	return xxhash.Sum64(b)
}

func hashmodReplicas(eps []endpoint, rf int, h uint64) []string {
	sorted := append([]endpoint(nil), eps...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Address < sorted[j].Address })
	out := []string{}
	for n := 0; n < rf; n++ {
		out = append(out, sorted[(h+uint64(n))%uint64(len(sorted))].Address)
	}
	return out
}

type sec struct {
	hash uint64
	idx  int
}

type ketama struct {
	eps      []endpoint
	secs     []sec
	replicas [][]int
}

func newKetama(eps []endpoint, rf int) *ketama {
	k := &ketama{eps: eps}
	zones := map[string]bool{}
	for i, e := range eps {
		zones[e.AZ] = true
		for s := 1; s <= 1000; s++ {
			k.secs = append(k.secs, sec{xxhash.Sum64String(e.Address + ":" + strconv.Itoa(s)), i})
		}
	}
	sort.Slice(k.secs, func(a, b int) bool {
		if k.secs[a].hash != k.secs[b].hash {
			return k.secs[a].hash < k.secs[b].hash
		}
		return k.secs[a].idx < k.secs[b].idx
	})
	for i := range k.secs {
		taken := map[int]bool{}
		count := map[string]int{}
		for z := range zones {
			count[z] = 0
		}
		var reps []int
		for j := i; len(reps) < rf; j = (j + 1) % len(k.secs) {
			e := k.secs[j].idx
			if taken[e] {
				continue
			}
			z := eps[e].AZ
			least := -1
			for _, c := range count {
				if least < 0 || c < least {
					least = c
				}
			}
			if len(zones) > 1 && count[z] > least {
				continue
			}
			taken[e] = true
			count[z]++
			reps = append(reps, e)
		}
		k.replicas = append(k.replicas, reps)
	}
	return k
}

func (k *ketama) place(h uint64) []string {
	i := sort.Search(len(k.secs), func(i int) bool { return k.secs[i].hash >= h })
	if i == len(k.secs) {
		i = 0
	}
	out := []string{}
	for _, e := range k.replicas[i] {
		out = append(out, k.eps[e].Address)
	}
	return out
}

func eps(zones []string, names ...string) []endpoint {
	out := []endpoint{}
	for i, n := range names {
		e := endpoint{Address: n}
		if zones != nil {
			e.AZ = zones[i]
		}
		out = append(out, e)
	}
	return out
}

func write(path string, v interface{}) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		panic(err)
	}
}

// writeLines writes one compact JSON value per line, to keep diffs readable.
func writeLines[T any](path string, items []T) {
	var out []byte
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			panic(err)
		}
		out = append(append(out, b...), '\n')
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		panic(err)
	}
}

func main() {
	dir := os.Args[1]

	// Plain hash vectors.
	hashes := map[string]string{
		"empty":                 fmt.Sprintf("%016x", xxhash.Sum64(nil)),
		"abc":                   fmt.Sprintf("%016x", xxhash.Sum64String("abc")),
		"node-0:10901:1":        fmt.Sprintf("%016x", xxhash.Sum64String("node-0:10901:1")),
		"prefix_tenant_a_up":    fmt.Sprintf("%016x", seriesHash("tenant-a", []label{{"__name__", "up"}, {"job", "node"}})),
		"prefix_default_no_lbl": fmt.Sprintf("%016x", seriesHash("default-tenant", nil)),
	}
	write(filepath.Join(dir, "hash.json"), hashes)

	// Placement vectors.
	names := func(prefix string, n int) []string {
		out := []string{}
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("%s-%d.%s.monitoring.svc.cluster.local:10901", prefix, i, prefix))
		}
		return out
	}
	rings := []ring{
		{"hashmod-3", "hashmod", 3, eps(nil, "c:10901", "a:10901", "b:10901")},
		{"hashmod-5-rf2", "hashmod", 2, eps(nil, names("receive", 5)...)},
		{"ketama-3-rf3", "ketama", 3, eps(nil, names("ingest", 3)...)},
		{"ketama-6-rf3", "ketama", 3, eps(nil, names("thanos-receive", 6)...)},
		{"ketama-1-rf1", "ketama", 1, eps(nil, "only:10901")},
		{"ketama-az-6-rf3", "ketama", 3, eps([]string{"z1", "z1", "z1", "z2", "z2", "z3"}, names("az", 6)...)},
		{"ketama-az-4-rf2", "ketama", 2, eps([]string{"east", "east", "east", "west"}, names("lopsided", 4)...)},
		{"ketama-mixed-az-5-rf3", "ketama", 3, eps([]string{"", "a", "", "a", "b"}, names("mixed", 5)...)},
	}
	rnd := rand.New(rand.NewSource(42))
	var cases []placementCase
	for _, r := range rings {
		var k *ketama
		if r.Algorithm == "ketama" {
			k = newKetama(r.Endpoints, r.RF)
		}
		for i := 0; i < 40; i++ {
			tenant := []string{"default-tenant", "team-a", "team-b", ""}[i%4]
			labels := []label{{"__name__", "http_requests_total"}, {"instance", fmt.Sprintf("10.0.%d.%d:9100", rnd.Intn(256), rnd.Intn(256))}, {"job", "node"}}
			if i%5 == 0 {
				labels = append(labels, label{"zone", "€-" + strconv.Itoa(rnd.Intn(1000))})
			}
			h := seriesHash(tenant, labels)
			var reps []string
			if k != nil {
				reps = k.place(h)
			} else {
				reps = hashmodReplicas(r.Endpoints, r.RF, h)
			}
			c := placementCase{Ring: r.Name, Tenant: tenant, Hash: strconv.FormatUint(h, 10), Replicas: reps}
			for _, l := range labels {
				c.Labels = append(c.Labels, [2]string{l.Name, l.Value})
			}
			cases = append(cases, c)
		}
		// Hashes at the edges of the ring, given directly.
		for _, h := range []uint64{0, 1, ^uint64(0), ^uint64(0) - 1, 1 << 63} {
			var reps []string
			if k != nil {
				reps = k.place(h)
			} else {
				reps = hashmodReplicas(r.Endpoints, r.RF, h)
			}
			cases = append(cases, placementCase{Ring: r.Name, Hash: strconv.FormatUint(h, 10), Replicas: reps})
		}
	}
	write(filepath.Join(dir, "rings.json"), rings)
	writeLines(filepath.Join(dir, "placement.jsonl"), cases)

	// Glob vectors straight from Go's filepath.Match.
	type globCase struct {
		Pattern string `json:"pattern"`
		Name    string `json:"name"`
		Match   bool   `json:"match"`
		Err     bool   `json:"err"`
	}
	patterns := []string{"*", "tenant-*", "team-?", "team-[ab]", "team-[^ab]", "[a-c]*", "*-prod", "a*b*c", "\\*", "a/*", "*/b", "[", "[]", "[^]", "a\\", "[a-]", "[\\]]*", "**", "?*?", "é*", "*€", "[é-€]", ""}
	namesList := []string{"", "a", "abc", "tenant-a", "tenant-", "team-a", "team-c", "team-ab", "x-prod", "a/b", "ab/c", "*", "]x", "é", "€", "a€b", "/"}
	var globs []globCase
	for _, p := range patterns {
		for _, n := range namesList {
			m, err := filepath.Match(p, n)
			globs = append(globs, globCase{p, n, m, err != nil})
		}
	}
	alpha := []rune{'a', 'b', '*', '?', '[', ']', '^', '-', '\\', '/', 'é', '€'}
	nalpha := []rune{'a', 'b', '/', '-', ']', '^', 'é', '€', '*'}
	for i := 0; i < 3000; i++ {
		p := make([]rune, rnd.Intn(7))
		for j := range p {
			p[j] = alpha[rnd.Intn(len(alpha))]
		}
		n := make([]rune, rnd.Intn(6))
		for j := range n {
			n[j] = nalpha[rnd.Intn(len(nalpha))]
		}
		m, err := filepath.Match(string(p), string(n))
		globs = append(globs, globCase{string(p), string(n), m, err != nil})
	}
	writeLines(filepath.Join(dir, "glob.jsonl"), globs)
}
