#!/bin/sh
# Rewrites hash.json, rings.json, placement.jsonl and glob.jsonl from gen/main.go.
# Needs Debian's golang-go and golang-github-cespare-xxhash-dev (no network).
set -eu
cd "$(dirname "$0")"
out="$PWD"
cd gen
GOPROXY=off GOFLAGS=-mod=mod go run . "$out"
