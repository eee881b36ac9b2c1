# The developer interface. `make help` lists the targets.
SHELL := bash
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help build release text-order image-root run test test-static lint bench test-reliability docker migrate-up migrate-down clean

# The shipped binary: static musl, `dist` profile (Cargo.toml), allocator by
# measurement (BENCHMARKS.md, "Static binary").
RELEASE_TARGET := x86_64-unknown-linux-musl
RELEASE_FEATURES ?=
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE_BIN := $(TARGET_DIR)/$(RELEASE_TARGET)/dist/usersvc
IMAGE_ROOT := $(TARGET_DIR)/image-root
IMAGE ?= usersvc
USERSVC_VERSION ?= $(shell git describe --tags --exact-match --match 'v*' 2>/dev/null | sed 's/^v//')
USERSVC_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## debug build
	$(CARGO) build

release: ## static, stripped x86_64 Linux binary (musl; installs the target and musl-tools if missing)
	CARGO=$(CARGO) scripts/release/build.sh $(RELEASE_FEATURES)
	@echo "$(RELEASE_BIN): $$(stat -c %s $(RELEASE_BIN)) bytes ($$(( $$(stat -c %s $(RELEASE_BIN)) / 1024 )) KiB)$$(file -b $(RELEASE_BIN) 2>/dev/null | cut -d, -f1-2,4- | sed 's/^/, /')"

text-order: ## renew scripts/release/text-order.txt, the release binary's code layout (valgrind, PostgreSQL)
	scripts/release/text-order.sh

image-root: release ## the container image's root filesystem, without Docker (target/image-root)
	scripts/image-root.sh $(RELEASE_BIN) $(IMAGE_ROOT)

run: build ## serve on :8080 (a local PostgreSQL under .dev/ when DATABASE_URL is unset)
	scripts/run-dev.sh

test: ## every test, against real PostgreSQL (started or created as needed)
	scripts/ensure-test-services.sh
	scripts/ensure-tools.sh
	CARGO=$(CARGO) scripts/run-tests.sh

test-reliability: ## fault, overload and abuse scenarios against the release binary; writes RELIABILITY.md (not part of `make test`)
	scripts/reliability/run.sh

test-static: image-root ## the release binary in an empty root and in the image root (tests/static_binary.rs)
	scripts/ensure-test-services.sh
	source .dev/test.env && USERSVC_RELEASE_BIN=$(abspath $(RELEASE_BIN)) USERSVC_IMAGE_ROOT=$(abspath $(IMAGE_ROOT)) \
	  $(CARGO) test --test static_binary

lint: ## rustfmt, clippy -D warnings, cargo deny, hadolint, kubernetes-validate, systemd-analyze
	scripts/ensure-tools.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	rustfmt --check --edition 2021 scripts/bench/async-ref/src/main.rs
	scripts/lint-deploy.sh

bench: ## load benchmarks against the machine's own ceilings (see BENCHMARKS.md)
	scripts/bench/run.sh

docker: ## the FROM-scratch and distroless images (IMAGE=usersvc); a hint and exit 0 where no Docker engine answers
	@if ! docker info >/dev/null 2>&1; then \
	  echo "make docker: no Docker engine answers here (docker info failed); nothing built."; \
	  echo "  On a machine with Docker: make docker [IMAGE=registry/usersvc:tag]"; \
	  echo "  Here: 'make image-root' assembles the same root filesystem in $(IMAGE_ROOT)."; \
	  exit 0; \
	fi; \
	docker build --build-arg USERSVC_VERSION=$(USERSVC_VERSION) --build-arg USERSVC_COMMIT=$(USERSVC_COMMIT) -t $(IMAGE) . && \
	docker build --target distroless --build-arg USERSVC_VERSION=$(USERSVC_VERSION) --build-arg USERSVC_COMMIT=$(USERSVC_COMMIT) -t $(IMAGE)-distroless .

migrate-up: build ## apply pending migrations (DATABASE_URL, else the .dev cluster)
	scripts/run-dev.sh migrate up

migrate-down: build ## roll back the last migration (N=… for more)
	scripts/run-dev.sh migrate down $(or $(N),1)

clean: ## stop the .dev clusters and remove build output and .dev/
	@source scripts/lib-postgres.sh; for d in .dev/pg .dev/test-pg; do \
	  if [ -d $$d/data ] && as_pg_owner "$$(pg_bindir)/pg_ctl" -D $$d/data status >/dev/null 2>&1; then \
	    echo "==> stopping the PostgreSQL cluster in $$d"; \
	    as_pg_owner "$$(pg_bindir)/pg_ctl" -D $$d/data -m fast stop; \
	  fi; \
	done
	$(CARGO) clean
	rm -rf .dev bench-out
