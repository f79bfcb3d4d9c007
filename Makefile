# aloft: `make demo` runs the product end to end; `make test` runs every test.
GO ?= go

.PHONY: build demo test fuzz bench-gateway bench-deploy bench-placement bench-autoscale bench-kubernetes clean example-image k8s-tools

# Each fuzz target runs for FUZZTIME in CI; run longer by hand: make fuzz FUZZTIME=10m
FUZZTIME ?= 10s
FUZZ_TARGETS = ./api/v1:FuzzParseSpec ./internal/auth:FuzzParseBearer ./internal/secrets:FuzzOpen ./internal/server:FuzzAPIDecode ./internal/gateway:FuzzReadRequest

build:
	$(GO) build -o bin/aloft ./cmd/aloft
	$(GO) build -o bin/aloft-completions ./examples/completions

demo:
	scripts/demo.sh

# A static build of the example AI service (it listens on $PORT), packed as an
# image for the local image store: aloft image import bin/hello-world.tar
example-image:
	CGO_ENABLED=0 $(GO) build -o bin/aloft-completions ./examples/completions
	$(GO) run ./examples/mkimage -bin bin/aloft-completions -name hello-world:latest -port 8080 -o bin/hello-world.tar

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok for
# internal/k8stest, built once into ~/.cache/aloft/k8s/<key>/bin (~15 min cold, <1 s cached).
k8s-tools:
	GO=$(GO) tools/k8s/build.sh

test: k8s-tools
	$(GO) vet ./...
	ALOFT_K8S_BIN=$$(GO=$(GO) tools/k8s/build.sh | tail -1) ALOFT_K8S_REQUIRE=1 $(GO) test -race -timeout 20m ./...
	$(MAKE) fuzz

fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -timeout 0 $$pkg || exit 1; \
	done

bench-gateway:
	$(GO) run ./bench/gateway

clean:
	rm -rf bin .aloft

bench-deploy:
	$(GO) run ./bench/deploy

# Needs CBC (apt-get install -y coinor-cbc) or glpsol; see bench/placement/README.md.
bench-placement:
	$(GO) run ./bench/placement

# Autoscaling policies in the simulator over real and synthetic traces; see bench/autoscale/README.md.
bench-autoscale:
	$(GO) run ./bench/autoscale

# 3 test clusters (internal/k8stest), 100 replicas applied over them; see bench/kubernetes/README.md.
bench-kubernetes: k8s-tools
	$(GO) run ./bench/kubernetes
