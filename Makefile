# vsgate — make help lists the targets.
GO       ?= go
FUZZTIME ?= 30s
MODE     ?= all
COUNT    ?= 5

.PHONY: help build deps test vet fmt-check bench bench-e2e fuzz demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build every package, the gateway (./vsgate, without cgo) and its test bench (./vsgate-lab)
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o vsgate ./cmd/vsgate
	CGO_ENABLED=0 $(GO) build -o vsgate-lab ./cmd/vsgate-lab

deps: ## install the Debian packages the tests, demo and benchmarks need (.ci/deps; root), or list the missing ones
	@sh .ci/install-deps

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

# The end-to-end packages run after the rest, one at a time: they measure
# a gateway in netlab (floods, SYN proxy, fragments), which the other
# packages' race tests would otherwise share two cores with.
E2E_PKGS = ./internal/e2e ./internal/bench

# As root, make test first installs what the tests need (deps) and then
# nothing may skip: the tests that need root or a tool fail instead
# (internal/netlab/labtest). As a user it installs nothing, and the tests
# that need root or a missing tool skip; it says which, once, at the end.
test: deps fmt-check vet ## install the packages the tests need (root), gofmt check, go vet, every test under -race (end-to-end ones last, alone), every benchmark once
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /internal/e2e -e /internal/bench)
	$(GO) test -race -count=1 -p 1 $(E2E_PKGS)
	$(GO) test -run '^$$' -bench . -benchtime=1x ./...
	@if [ "$$(id -u)" != 0 ]; then 	  echo "make test ran as $$(id -un), not root: skipped the tests that build network namespaces (netlab, the end-to-end demo and benchmark, the kernel reference gateway), drop privileges (internal/privilege) or connect as another user (gateway's control socket); run it as root to run them all."; 	  missing=$$(sh .ci/install-deps); [ -z "$$missing" ] || echo "Also skipped: the tests of tools this machine lacks ($$missing; make deps as root installs them)."; 	fi

bench: ## every Go benchmark, COUNT times, into bench.txt (for benchstat) and its medians into bench.md
	$(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) ./... | tee bench.txt
	$(GO) run ./cmd/vsgate-lab bench summarize -o bench.md bench.txt
	@echo "medians: bench.md"

BENCH_OUT ?= $(if $(QUICK),/tmp/vsgate-bench-quick,docs/bench)

bench-e2e: ## end-to-end benchmarks in netlab vs nftables, HAProxy, nginx, Apache (root; QUICK=1: short, for CI) into BENCH_OUT
	@[ "$$(id -u)" = 0 ] || { echo "make bench-e2e needs root (it creates network namespaces)"; exit 1; }
	@sh .ci/install-deps
	CGO_ENABLED=0 $(GO) build -o vsgate ./cmd/vsgate
	CGO_ENABLED=0 $(GO) build -o vsgate-lab ./cmd/vsgate-lab
	./vsgate-lab bench $(if $(QUICK),-quick) -out $(BENCH_OUT)

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

demo: ## build vsgate, run it in netlab with real traffic on TUN, AF_PACKET and AF_XDP, replay the handbook, fail over behind BGP routers (MODE=tun|afpacket|afxdp|handbook|ecmp|dr|both|all; KEEP=1: keep the lab up and show the status page's address), report, clean up (root)
	@[ "$$(id -u)" = 0 ] || { echo "make demo needs root (it creates network namespaces)"; exit 1; }
	@sh .ci/install-deps
	CGO_ENABLED=0 $(GO) build -o vsgate ./cmd/vsgate
	CGO_ENABLED=0 $(GO) build -o vsgate-lab ./cmd/vsgate-lab
	./vsgate-lab demo $(if $(KEEP),-keep) $(MODE)
