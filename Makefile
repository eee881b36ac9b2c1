# The developer interface. `make help` lists the targets.
SHELL := bash
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help build release run test lint bench test-reliability docker migrate-up migrate-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## debug build
	$(CARGO) build

release: ## optimised, stripped build (target/release/usersvc)
	$(CARGO) build --release

run: build ## serve on :8080 (a local PostgreSQL under .dev/ when DATABASE_URL is unset)
	scripts/run-dev.sh

test: ## every test, against real PostgreSQL (started or created as needed)
	scripts/ensure-test-services.sh
	scripts/ensure-tools.sh
	CARGO=$(CARGO) scripts/run-tests.sh

test-reliability: ## fault, overload and abuse scenarios against the release binary; writes RELIABILITY.md (not part of `make test`)
	scripts/reliability/run.sh

lint: ## rustfmt check + clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: ## load benchmarks against the machine's own ceilings (see BENCHMARKS.md)
	scripts/bench/run.sh

docker: ## the FROM-scratch image
	@echo "make docker: the image arrives with the packaging issue" >&2; exit 1

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
