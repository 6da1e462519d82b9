# Confluo-Go. `make demo` runs the product on an embedded default; `make test` runs every test.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED ?= 0

GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
FUZZTIME  ?= 30s
BIN       := bin

.PHONY: all build build-dpdk demo test test-go test-dpdk setup lint fuzz bench clean

all: build

## build: every binary, CGO_ENABLED=0 (no DPDK).
build:
	$(GO) build -o $(BIN)/ ./sidecar/cmd/... $(if $(wildcard coordinator/cmd),./coordinator/cmd/...)

## build-dpdk: the sidecar with the DPDK vhost-user source (cgo, Debian's libdpdk-dev).
build-dpdk:
	CGO_ENABLED=1 $(GO) build -tags dpdk -o $(BIN)/dpdk/ ./sidecar/cmd/...

## demo: embedded NATS + a sidecar replaying a shipped capture, with example triggers and a query.
demo:
	bash scripts/demo.sh

## test: installs and starts what the tests need (OVS, OVS-DPDK, hugepages, tshark), then runs
## every test with -race and the invariants build tag, integration and end-to-end tests included.
test: setup test-go test-dpdk

setup:
	bash scripts/setup-test-env.sh

test-go:
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags invariants -timeout 20m $(PKGS)

test-dpdk:
	@if [ -d pkg/spray/dpdk ]; then \
		CGO_ENABLED=1 $(GO) test -race -count=1 -tags 'dpdk invariants' -timeout 10m -p 1 ./pkg/spray/dpdk/... $(if $(wildcard sidecar/e2e),./sidecar/e2e/...); \
	fi

## lint: go vet, staticcheck (pinned in go.mod's tool block) and gofmt.
lint:
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## bench: every benchmark (figures in records/s, ns/op, allocs).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

clean:
	rm -rf $(BIN)
