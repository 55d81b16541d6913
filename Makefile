# The two commands of the README, and their parts.
#   make quickstart   install libtorch (PyPI), build dctk, run scripts/quickstart.rhai, write its report
#   make test         install libtorch (PyPI), build, run every test (the Hugging Face export
#                     test installs the transformers venv itself when it is missing)
#   make hf-env       the transformers venv (.dctk/hf-venv) the Hugging Face export test and
#                     `dctk bench generate` compare with
# Everything is local to the checkout: libtorch lives in .dctk/, builds in target/.
CARGO ?= cargo
CARGO_FLAGS ?= --release
export CARGO_TERM_COLOR ?= never

.PHONY: quickstart test build libtorch hf-env doctor bench clean

libtorch:
	bash tools/libtorch.sh >/dev/null

# Idempotent and locked: when .ci/run has started it in the background (so the ~2 min pip
# install overlaps the cargo build), this waits for that install and then finds it done.
# tests/export_hf.rs calls the same script, so `make test` does not wait for it up front.
hf-env:
	bash tools/hf_env.sh >/dev/null

build: libtorch
	$(CARGO) build $(CARGO_FLAGS) --workspace

quickstart: build
	./target/release/dctk run scripts/quickstart.rhai --data-root data
	./target/release/dctk report scripts/quickstart.rhai --out runs/quickstart-report.html

test: build
	$(CARGO) test $(CARGO_FLAGS) --workspace --no-fail-fast

doctor: build
	./target/release/dctk doctor

bench: build
	test -x bench/.venv/bin/python || bash bench/setup.sh
	./target/release/dctk bench train --preset tiny --threads 2 --rounds 5

clean:
	$(CARGO) clean
