module ringest.local/hashring-vectors

go 1.19

require github.com/cespare/xxhash/v2 v2.0.0

// Debian's golang-github-cespare-xxhash-dev ships the v2 module here.
replace github.com/cespare/xxhash/v2 => /usr/share/gocode/src/github.com/cespare/xxhash
