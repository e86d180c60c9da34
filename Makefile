# shardkit: `make demo` runs the whole job on a small built-in example; `make test` runs the test suite.
# Both install what they need into .venv first (CPU TensorFlow), so they work from a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,convert,train,dask,aws,gcp,test

.PHONY: install demo compare-demo test bench bench-quick docker clean
DEMO ?= demo-out

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The seed-000 situation in miniature: knot images written class-sorted into a PyTables EArray, converted
# to shuffled, stratified shards, checked, then trained with validation every epoch and tested at the end.
demo: install
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== 1/5 The source, sorted by class as in seed 000: 1,500 knot images of 3 classes in a PyTables file"
	$(BIN)/python -m shardkit.convert.examples knots $(DEMO)/knots.h5 --n 500 --size 48
	@echo "== 2/5 Convert: shuffled, stratified train/validation/test shards and metadata.json"
	$(BIN)/shardkit-convert $(DEMO)/knots.h5 --out $(DEMO)/knots --kind image \
		--data /train_data --label /train_label --image-shape 48,48,3 --num-shards 4 \
		--class-names unknot,plus_trefoil,minus_trefoil
	@echo "== 3/5 Verify: read every record back (CRCs, counts per shard and class, no row in two splits)"
	$(BIN)/shardkit-train verify --quiet $(DEMO)/knots
	@echo "== 4/5 Inspect: what the dataset holds, with a few decoded examples (and a picture of them)"
	$(BIN)/shardkit-train inspect $(DEMO)/knots --out $(DEMO)/inspect --examples 4
	@echo "== 5/5 Train knot-cnn: each example once per epoch, validation every epoch, the test split at the end"
	$(BIN)/shardkit-train fit $(DEMO)/knots --model knot-cnn --epochs 6 --batch-size 32 \
		--out $(DEMO)/run --verbose 2
	@echo "demo done: the dataset is in $(DEMO)/knots, example images in $(DEMO)/inspect/examples.png, and the run"
	@echo "  (metrics.json, history.csv, training_curves.png, confusion_test.png) in $(DEMO)/run"

# Seed 003's question end to end: the same LSTM on (timesteps, dim) feature sequences trained with
# once-per-epoch sampling and with sampling with replacement, five seeds each, then: is the difference real?
compare-demo: install
	rm -rf $(DEMO)/compare && mkdir -p $(DEMO)/compare
	$(BIN)/python -m shardkit.convert.examples features $(DEMO)/compare/features.h5 --n 3000 --timesteps 10 --dim 16
	$(BIN)/shardkit-convert $(DEMO)/compare/features.h5 --out $(DEMO)/compare/features --kind array \
		--data /features --label /labels --num-shards 4 --workers 1 --worker-mode thread --quiet
	for sampling in epoch replacement; do \
		$(BIN)/shardkit-train fit $(DEMO)/compare/features --model sequence-lstm --epochs 5 --batch-size 64 \
			--sampling $$sampling --repeat 5 --out $(DEMO)/compare/$$sampling --verbose 0 --no-tensorboard || exit 1; \
	done
	$(BIN)/shardkit-train compare $(DEMO)/compare/epoch $(DEMO)/compare/replacement --out $(DEMO)/compare/result
	@echo "compare-demo done: runs in $(DEMO)/compare/{epoch,replacement}, compare.json and compare.png in $(DEMO)/compare/result"

# Two pytest workers (pytest-xdist), each taking whole test files so that a file's module-scoped datasets and runs
# are built once; TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Benchmarks (docs/benchmarks.md + docs/img/*.png); bench-quick is a small smoke run into bench/out/.
bench: install
	$(BIN)/python -m bench.run_all

bench-quick: install
	$(BIN)/python -m bench.run_all --quick

# Builds both images where a Docker engine runs (hadolint lints them inside `make test` everywhere).
docker:
	@if docker info >/dev/null 2>&1; then \
		docker build -f docker/convert.Dockerfile -t shardkit-convert:0.1.0 . && \
		docker build -f docker/train.Dockerfile -t shardkit-train:0.1.0 . ; \
	else echo "make docker: no Docker engine here; skipped (hadolint lints both Dockerfiles in make test)"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info demo-out runs
