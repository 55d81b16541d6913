# The two commands of the README, and their parts.
#   make quickstart   install libtorch (PyPI), build dctk, run scripts/quickstart.rhai
#   make test         install libtorch (PyPI), build, run every test
# Everything is local to the checkout: libtorch lives in .dctk/, builds in target/.
CARGO ?= cargo
CARGO_FLAGS ?= --release
export CARGO_TERM_COLOR ?= never

.PHONY: quickstart test build libtorch doctor bench clean

libtorch:
	bash tools/libtorch.sh >/dev/null

build: libtorch
	$(CARGO) build $(CARGO_FLAGS) --workspace

quickstart: build
	./target/release/dctk run scripts/quickstart.rhai --data-root data

test: build
	$(CARGO) test $(CARGO_FLAGS) --workspace --no-fail-fast

doctor: build
	./target/release/dctk doctor

bench: build
	test -x bench/.venv/bin/python || bash bench/setup.sh
	./target/release/dctk bench train --preset tiny --threads 2 --rounds 5

clean:
	$(CARGO) clean
