# autoprof — build, test and demo. Every target installs what it needs on a
# fresh Debian machine (as root); see README.md.

GO       ?= go
KERNELS  ?= 6.1,6.12
FUZZTIME ?= 10s
BIN      := bin
# Binaries run inside the test VMs, which have no libc.
STATIC   := CGO_ENABLED=0

.PHONY: all build deps lint unit fuzz bench vmtest vmtest-full vmbench truth mutants test generate check-generate demo clean

all: build

build:
	$(STATIC) $(GO) build -ldflags "-X main.buildCommit=$$(git rev-parse --short=12 HEAD 2>/dev/null)$$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" -o $(BIN)/autoprof ./cmd/autoprof
	$(STATIC) $(GO) build -o $(BIN)/vmtest ./internal/vmtest/cmd/vmtest

# deps installs the system packages the tests and the VM need.
deps:
	@./scripts/deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags vm ./...
	$(GO) vet -tags vmhost ./cmd/autoprof
	$(GO) tool staticcheck ./...

# unit runs every host test with the race detector.
unit:
	$(GO) test -race -count=1 ./...

# fuzz runs each fuzz target briefly.
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

# bench runs every benchmark once so that none rots; use
# `go test -bench=NAME -benchtime=...` for real figures.
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

# vmtest runs the in-VM tests (files tagged vm) on each Debian kernel, the
# kernels at once, with -short and 30 minutes a package (search/live's
# hunts take about 20 under TCG with the other kernel's VM beside them): the stress tests make a tenth of their
# cycles (1,000 splice/unsplice and 100 attach/detach cycles instead of
# 10,000 and 1,000; 3,000 soak cycles instead of 100,000; 20 s of ioctl
# fuzzing instead of 3 minutes), so that the whole of make test fits CI's
# 40 minutes. vmtest-full runs them in full (over an hour per kernel: the
# soak and the fuzzer alone take 36 to 38 minutes).
vmtest: build
	$(BIN)/vmtest test -short -timeout 30m -kernels $(KERNELS)
	$(VMHOST)

vmtest-full: build
	$(BIN)/vmtest test -timeout 120m -kernels $(KERNELS)
	$(VMHOST)

# VMHOST runs the tests that boot the VMs from the host and drive them from
# there (build tag vmhost): the GUI in the guest, a Chromium on the host
# through a forwarded port.
VMHOST = KERNELS=$(KERNELS) $(GO) test -tags vmhost -count=1 -timeout 30m -run TestUIBrowserVM ./cmd/autoprof

# vmbench runs the in-VM benchmarks once on each kernel and prints their
# tables: instrument costs per backend (splice), the hunt's slowdown and
# time to a correct finding (search/live). Under TCG only ratios within
# one run compare.
vmbench: build
	$(BIN)/vmtest test -kernels $(KERNELS) -bench . ./splice ./search/live

# mutants undoes, one at a time, issue 14's fixes in the splicing module
# (kmod/splicer/testdata/mutants/*.patch) and runs each fix's VM tests on
# both kernels: a mutant the tests do not catch is a test to strengthen.
mutants: build
	kmod/splicer/testdata/mutants/run.sh

# truth is the truth benchmark: on each kernel, a hunt of each of the 20
# generated call trees (internal/calltree, the aptree module) against the
# module's own accounting of its planted costs without instruments, and
# of five real workloads (apload: stat storm, find, tar, pipe ping-pong,
# loopback TCP) against stack samples taken without instruments; it
# prints the tables (about 40 minutes, the kernels at once). CI runs a
# subset (TestVMTruth, TestVMRealTruth).
truth: build
	@rm -rf $(TRUTH_OUT)
	$(BIN)/vmtest test -timeout $$((90 * $(TRUTH_RUNS)))m -kernels $(KERNELS) -out $(TRUTH_OUT) -run '^$$' -bench 'BenchmarkVM(Real)?Truth$$' -benchtime $(TRUTH_RUNS)x ./search/live
	@echo "=== every tree's run (nodes and decisions): $(TRUTH_OUT)/SERIES/truth-RELEASE/TREE.json"

# test is everything CI runs.
test: deps lint unit fuzz bench vmtest

# generate rebuilds the BPF objects with the pinned clang (clang-14, Debian
# bookworm) and libbpf headers (libbpf-dev 1.1).
generate:
	@./scripts/deps.sh generate
	$(GO) generate ./...

# check-generate fails when the committed BPF objects differ from a rebuild.
check-generate: generate
	git diff --exit-code -- '*.o' '*_bpfel.go'

# demo is the main job: `autoprof hunt`, end to end, in a VM running
# Debian's $(DEMO_KERNEL) kernel, on the bundled workload (apload: a stat
# storm over a directory tree 24 levels deep). It prints the hunt's progress
# and findings; the profile and the reports come back to $(DEMO_OUT). QEMU
# emulates the CPU (TCG), which makes every probe about a hundred times
# dearer than on hardware: the demo allows the instruments 50% of the CPUs
# instead of the default 2%.
DEMO_KERNEL ?= 6.1
DEMO_OUT    ?= autoprof-out/demo
TRUTH_OUT   ?= autoprof-out/truth
# TRUTH_RUNS hunts each tree that many times: one run cannot tell a miss
# from a close call that went either way.
TRUTH_RUNS  ?= 1
DEMO_CMD    ?= ./apload stat 24 1500000
demo: deps build
	@$(MAKE) -s -C internal/workload
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	@echo "=== autoprof hunt -- $(DEMO_CMD), in a VM running Debian's $(DEMO_KERNEL) kernel"
	cd internal/workload && ../../$(BIN)/vmtest exec -kernel $(DEMO_KERNEL) -timeout 10m -out ../../$(DEMO_OUT) \
		../../$(BIN)/autoprof hunt --budget 50 --duration 3m -o /vmtest/out -- $(DEMO_CMD)
	@echo "=== on this machine: profile $(DEMO_OUT)/profile.pb.gz (go tool pprof -top $(DEMO_OUT)/profile.pb.gz),"
	@echo "    reports $(DEMO_OUT)/report.txt and $(DEMO_OUT)/report.html"
	@test -s $(DEMO_OUT)/profile.pb.gz

clean:
	rm -rf $(BIN)
