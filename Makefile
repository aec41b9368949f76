# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned first so pip takes the CPU wheel, never a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint bench bench-calibrate-matrix bench-ekfac bench-kronfluence bench-gradients bench-gpu bench-matrix-orders bench-diagnosis bench-perf bench-scaling-perf bench-budget bench-matrix bench-grow bench-damping bench-check bench-protocol-head bench-protocol-head-diagnosis bench-probes bench-probes-user bench-random bench-digits bench-fmnist bench-scaling bench-ablation bench-diagnostics clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,peers,kronfluence]"
	$(BIN)/pip install -q --no-deps "kronfluence==1.0.1"  # its package requires torchvision, which it never imports
	touch $(STAMP)

install: $(STAMP)

# --overwrite: a demo workspace left by an older version with other defaults is recomputed, not refused
demo: $(STAMP)
	$(BIN)/ddm run --workspace runs/demo --preset demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

# The benchmark suite behind BENCHMARKS.md: digits, then Fashion-MNIST (10k training images).
# Each run caches every stage and retrain under runs/, so an interrupted `make bench` resumes.
# The protocol sections of BENCHMARKS.md measured the previous default, local-free: pinned here so they reproduce.
EVAL   := -q --recipe local-free --seeds 0,1,2 --num-targets 20 --lds-subsets 50 --tune 0.01,0.03,0.1,0.3,1 --plots
FMNIST := --dataset fashion-mnist --set data.train_size=10000 --set data.test_size=2000 \
          --set model.width=16 --set train.epochs=5 --set train.lr=0.05
bench: bench-gradients bench-matrix bench-calibrate-matrix bench-ekfac bench-grow bench-damping bench-check bench-matrix-orders bench-diagnostics bench-protocol-head bench-protocol-head-diagnosis bench-diagnosis bench-probes bench-probes-user bench-random bench-perf bench-scaling-perf bench-digits bench-fmnist bench-scaling bench-ablation

# the seed-0 and seed-1 draws `ddm run --calibrate auto` calibrates (BENCHMARKS.md, "ddm run calibrates")
CALIBRATED_DRAWS = runs/random/01 runs/random/09 runs/random-s1/01 runs/random-s1/07 runs/random-s1/03 \
	runs/random/03 runs/random/05 runs/random/08 runs/random/10 runs/random/11 runs/random-s1/00 runs/random-s1/02 \
	runs/random-s1/05 runs/random-s1/06 runs/random-s1/09 runs/random-s1/11

# The paper's protocol (Table 1, 4 analogs, unlearning fidelity, cost) with the head default: digits, seed 0.
# Configurations drawn at random, run from the command line as a user would (BENCHMARKS.md, "Configurations drawn
# at random" and "ddm run calibrates"): three draws of 12, each resumed where a kill left it; seeds 0 and 1 as they
# ran before `ddm run --calibrate` existed, then their calibration scored on the check's held-out retrains, seed 2
# with it. Needs Fashion-MNIST.
bench-random: $(STAMP)
	$(BIN)/python benchmarks/random_probes.py --seed 0 -n 12 --root runs/random --out benchmarks/results/random-probes --calibrate never
	$(BIN)/python benchmarks/random_probes.py --seed 1 -n 12 --root runs/random-s1 --out benchmarks/results/random-probes-s1 --calibrate never
	$(BIN)/python benchmarks/calibrate_loose.py $(CALIBRATED_DRAWS) --root runs/calibrate --out benchmarks/results/calibrate-random
	$(BIN)/python benchmarks/random_probes.py --seed 2 -n 12 --root runs/random-s2 --out benchmarks/results/random-probes-s2
	$(BIN)/python benchmarks/random_probes.py --space wide --seed 3 -n 12 --root runs/wide3 --out benchmarks/results/random-probes-wide3
	$(BIN)/python benchmarks/random_probes.py --space wide --seed 4 -n 12 --root runs/wide4 --out benchmarks/results/random-probes-wide4
	$(BIN)/python benchmarks/unlearn_loose.py --seed 0 -n 14 --root runs/loose --out benchmarks/results/unlearn-loose
	$(BIN)/python benchmarks/unlearn_loose.py --seed 1 -n 14 --root runs/loose1 --out benchmarks/results/unlearn-loose-s1
	$(BIN)/python benchmarks/unlearn_loose.py --seed 2 -n 14 --root runs/loose2 --out benchmarks/results/unlearn-loose-s2
	$(BIN)/python benchmarks/unlearn_loose.py --seed 0 -n 14 --root runs/loose --fit-band 0.2 0.5 --out benchmarks/results/unlearn-loose-band
	$(BIN)/python benchmarks/unlearn_loose.py --seed 1 -n 14 --root runs/loose1 --fit-band 0.2 0.5 --out benchmarks/results/unlearn-loose-band-s1
	$(BIN)/python benchmarks/unlearn_loose.py --seed 2 -n 14 --root runs/loose2 --fit-band 0.2 0.5 --out benchmarks/results/unlearn-loose-band-s2
	$(BIN)/python benchmarks/unlearn_loose_step.py --roots runs/loose runs/loose1 runs/loose2 --seeds 0 1 2 --out benchmarks/results/unlearn-loose-step
	$(BIN)/python benchmarks/random_probes.py --space wide --seed 5 -n 12 --root runs/wide5 --out benchmarks/results/random-probes-wide5
	$(BIN)/python benchmarks/unlearn_replay.py runs/wide3 runs/wide4 runs/wide5 runs/loose runs/loose1 runs/loose2 --out benchmarks/results/unlearn-replay
	$(BIN)/python benchmarks/unlearn_replay.py --draw 0 -n 12 --root runs/replay0 --out runs/replay0-only
	$(BIN)/python benchmarks/unlearn_replay.py --draw 1 -n 12 --root runs/replay1 --out runs/replay1-only
	$(BIN)/python benchmarks/unlearn_replay.py runs/replay0 runs/replay1 --out benchmarks/results/unlearn-replay-test
	$(BIN)/python benchmarks/unlearn_replay.py --space steps --draw 2 -n 16 --root runs/replay2 --rule-fit 0.3 --out benchmarks/results/unlearn-replay-test2
	$(BIN)/python benchmarks/unlearn_replay.py --space steps --draw 3 -n 32 --root runs/replay3 --rule-fit 0.3 --out benchmarks/results/unlearn-replay-test3
	$(BIN)/python benchmarks/unlearn_replay_matrix.py --seeds 0,1,2 --fill --classes --root runs/replay-matrix --out benchmarks/results/unlearn-replay-matrix
	$(BIN)/python benchmarks/unlearn_replay.py --space steps --draw 4 -n 24 --root runs/replay4 --rule-fit 0.3 --out benchmarks/results/unlearn-replay-test4
	$(BIN)/python benchmarks/unlearn_replay_matrix.py --progress --out benchmarks/results/unlearn-replay-matrix-progress
	$(BIN)/python benchmarks/unlearn_replay_matrix.py --step --configs digits-convnet-K100-sgd --seeds 1 --out benchmarks/results/unlearn-replay-matrix-step
	$(BIN)/python benchmarks/unlearn_replay.py --space steps --draw 5 -n 24 --root runs/replay5 --rule-fit 0.3 --out benchmarks/results/unlearn-replay-test5
	$(BIN)/python benchmarks/matrix_fit.py --seeds 0,1,2 --out benchmarks/results/matrix-fit
	$(BIN)/python benchmarks/unlearn_fit_threshold.py --seeds 0,1,2,3,4 --root runs/fit-threshold --out benchmarks/results/unlearn-fit-threshold-d2
	$(BIN)/python benchmarks/unlearn_fit_threshold.py --seeds 0,1,2,3,4 --root runs/fit-threshold-d3 --set model.depth=3 --out benchmarks/results/unlearn-fit-threshold

# Probes run as a user would, on axes no benchmark had (BENCHMARKS.md, "Long-tailed training data", "RGB images
# through the CIFAR-10 reader" and "Fine-tuning a pretrained network"): their data, the README's commands (probe.sh),
# and the --verify runs quoted there.
# Needs Fashion-MNIST (apt-get install dataset-fashion-mnist).
LT_RUN := --set cluster.per_class=4
TRANSFER := --dataset npz --data-dir runs/transfer/target.npz --set train.epochs=10 --set cluster.per_class=8
bench-probes-user: $(STAMP)
	$(BIN)/python benchmarks/results/probes-lt/make_data.py
	bash benchmarks/results/probes-lt/probe.sh lt1 0 --dataset npz --data-dir runs/lt/fmnist-lt.npz $(LT_RUN) \
	  --set model.seed=121 --set train.seed=121
	bash benchmarks/results/probes-lt/probe.sh lt2 1 --dataset npz --data-dir runs/lt/digits-lt.npz $(LT_RUN) \
	  --set train.epochs=60 --set model.seed=123 --set train.seed=123
	bash benchmarks/results/probes-lt/probe.sh lt3 0 --dataset npz --data-dir runs/lt/fmnist-lt.npz $(LT_RUN) \
	  --set model.name=mlp --set train.optimizer=adam --set train.lr=0.001 --set model.seed=125 --set train.seed=125
	for w in lt1 lt2 lt3; do $(BIN)/ddm unlearn --method step -w runs/lt/$$w -q --groups 1,6,11,16 --verify 3 \
	  > runs/lt/$$w.unlearn-v3.txt || exit 1; done
	for w in lt1 lt3; do $(BIN)/ddm diagnose -w runs/lt/$$w -q --verify 3 > runs/lt/$$w.diagnose-verify.txt || exit 1; done
	$(BIN)/python benchmarks/results/probes-rgb/make_data.py
	bash benchmarks/results/probes-rgb/probe.sh rgb1 3 --dataset cifar10 --data-dir runs/rgb --set data.train_size=3000 \
	  --set data.test_size=1000 --set cluster.per_class=4 --set model.seed=131 --set train.seed=131
	bash benchmarks/results/probes-rgb/probe.sh rgb2 5 --dataset cifar10 --data-dir runs/rgb --set data.train_size=3000 \
	  --set data.test_size=1000 --set model.name=resnet --set model.width=16 --set model.depth=2 \
	  --set train.momentum=0.9 --set train.lr=0.02 --set train.weight_decay=5e-4 --set train.schedule=cosine \
	  --set cluster.per_class=4 --set model.seed=133 --set train.seed=133
	bash benchmarks/results/probes-rgb/probe.sh rgb3 7 --dataset cifar10 --data-dir runs/rgb --set data.test_size=1000 \
	  --set cluster.per_class=10 --set model.seed=135 --set train.seed=135
	$(BIN)/ddm check -w runs/rgb/rgb2 -q --subsets 40 --peers if-explicit --try-temperature 0 > runs/rgb/rgb2.check40.txt
	for w in rgb1 rgb2 rgb3; do $(BIN)/ddm unlearn --method step -w runs/rgb/$$w -q --groups 1,6,11,16 --verify 3 \
	  > runs/rgb/$$w.unlearn-v3.txt || exit 1; done
	for w in rgb1 rgb3; do $(BIN)/ddm diagnose -w runs/rgb/$$w -q --verify 3 > runs/rgb/$$w.diagnose-verify.txt || exit 1; done
	$(BIN)/python benchmarks/results/probes-rgb/full_data_orders.py runs/rgb/rgb2
	$(BIN)/python benchmarks/results/probes-rgb/fewer_steps.py runs/rgb/rgb2 0.0953
	$(BIN)/python benchmarks/results/probes-transfer/make_data.py
	DDM=$(BIN)/ddm bash benchmarks/results/probes-transfer/probe.sh t1 2 $(TRANSFER) --model pretrained_models:convnet \
	  --set train.lr=0.02 --set train.seed=142
	DDM=$(BIN)/ddm bash benchmarks/results/probes-transfer/probe.sh t2 2 $(TRANSFER) \
	  --model pretrained_models:convnet_frozen --set train.lr=0.05 --set train.seed=143
	DDM=$(BIN)/ddm bash benchmarks/results/probes-transfer/probe.sh t3 2 --dataset npz \
	  --data-dir runs/transfer/target.npz --set train.epochs=5 --set cluster.per_class=8 \
	  --model pretrained_models:resnet_bn --set train.optimizer=adam --set train.lr=0.001 --set train.seed=144
	for w in t1 t2 t3; do PYTHONPATH=benchmarks/results/probes-transfer $(BIN)/ddm unlearn --method step -w runs/transfer/$$w -q \
	  --groups 1,6,11,16 --verify 3 > runs/transfer/$$w.unlearn-v3.txt || exit 1; \
	  PYTHONPATH=benchmarks/results/probes-transfer $(BIN)/ddm unlearn --method step -w runs/transfer/$$w -q --groups 2 --classes \
	  --verify 3 > runs/transfer/$$w.unlearn-class-v3.txt || exit 1; \
	  PYTHONPATH=benchmarks/results/probes-transfer $(BIN)/ddm diagnose -w runs/transfer/$$w -q --verify 3 \
	  > runs/transfer/$$w.diagnose-verify.txt || exit 1; done

bench-protocol-head: $(STAMP)
	$(BIN)/ddm evaluate -w runs/eval-head --preset demo -q --seeds 0 --num-targets 20 --lds-subsets 50
	mkdir -p benchmarks/results && cp runs/eval-head/evaluation.md benchmarks/results/digits-head-seed0.md && \
	  cp runs/eval-head/evaluation.json benchmarks/results/digits-head-seed0.json

# The same protocol with the data diagnosis (Table 3 analog, label-noise detection against peers and cleanlab):
# digits, seeds 0-2 (about 35 minutes per seed here).
bench-protocol-head-diagnosis: $(STAMP)
	$(BIN)/ddm evaluate -w runs/eval-head-diag --preset demo -q --seeds 0,1,2 --num-targets 20 --lds-subsets 50 --diagnose
	mkdir -p benchmarks/results && cp runs/eval-head-diag/evaluation.md benchmarks/results/digits-head-diagnosis.md && \
	  cp runs/eval-head-diag/evaluation.json benchmarks/results/digits-head-diagnosis.json

# Kinds of data the matrix never had (class imbalance, a binary task, many tiny groups, an overfitted MLP), and one
# group per training sample (K = N): attribution against exact retraining, flipped labels, and W fitted linearised
# against the regression (BENCHMARKS.md, "One group per sample"); and three configurations trained with a cosine
# learning-rate schedule ("A cosine learning-rate schedule"); last layers above distill.exact_limit and the curvature
# approximations against the exact matrix ("Large last layers").
bench-probes: $(STAMP)
	$(BIN)/python benchmarks/probe_kinds.py --seeds 0,1,2 --root runs/probe-kinds --out benchmarks/results/probe-kinds
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-per-sample,fmnist-mlp-per-sample \
	  --peers if-explicit,tracin,trak --no-variants --out benchmarks/results/matrix-held-out-per-sample-all
	$(BIN)/python benchmarks/flipped_per_sample.py --seeds 0,1,2 --out benchmarks/results/flipped-per-sample
	$(BIN)/python benchmarks/unlearn_samples.py --root runs/matrix-b \
	  --configs digits-convnet-per-sample,fmnist-mlp-per-sample --seeds 0,1,2 --out benchmarks/results/unlearn-samples
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 0,1,2 --peers "" --no-variants \
	  --set emulate.fit=linearised --out benchmarks/results/matrix-linearised
	$(BIN)/python benchmarks/matrix.py --select --grid emulate.fit=regression,linearised --unlearn-dampings= \
	  --root runs/matrix-b --no-variants --out benchmarks/results/matrix-select-fit
	for c in digits-convnet-K40-cosine:digits fmnist-mlp-K40-cosine:fmnist digits-mlp-K40-adam-cosine:adam; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $${c%%:*} --seeds 0,1,2 \
	    --peers if-explicit,tracin --no-variants --out benchmarks/results/matrix-held-out-cosine-$${c##*:} || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-wide-K40-momentum --seeds 0,1,2 \
	  --peers if-explicit,tracin --no-variants --out benchmarks/results/matrix-held-out-large-heads-digits-convnet-wide-K40-momentum
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-mlp-wide-K40-sgd --seeds 0,1,2 \
	  --peers if-explicit --no-variants --out benchmarks/results/matrix-held-out-large-heads-digits-mlp-wide-K40-sgd
	for c in convnet:digits-convnet-wide-K40-momentum mlp:digits-mlp-wide-K40-sgd; do \
	  $(BIN)/python benchmarks/grid.py --configs $${c##*:} --seed 0 --grid distill.curvature=exact,ekfac,kfac \
	    --out benchmarks/results/large-head-curvature-$${c%%:*} || exit 1; \
	  $(BIN)/python benchmarks/grid.py --configs $${c##*:} --seed 0 --grid distill.exact_limit=170,1000 \
	    --out benchmarks/results/large-head-rank-$${c%%:*} || exit 1; done
	for s in 0 1; do \
	  $(BIN)/python benchmarks/grid.py --configs $(MATRIX_A),$(MATRIX_B) --seed $$s --grid distill.curvature=exact,kfac \
	    --out benchmarks/results/kfac-seed$$s || exit 1; \
	  $(BIN)/python benchmarks/grid.py --configs $(MATRIX_A),$(MATRIX_B) --seed $$s --grid distill.exact_limit=170,330 \
	    --out benchmarks/results/subspace-seed$$s || exit 1; \
	  $(BIN)/python benchmarks/grid.py --configs $(MATRIX_A),$(MATRIX_B) --seed $$s --grid distill.curvature=ekfac \
	    --out benchmarks/results/ekfac-seed$$s || exit 1; done

# The configuration matrix (issue "DDM that attributes on models and data it was not tuned on"): the default's
# damping chosen on the selection configurations (seed 3, validation targets), then every configuration on
# seeds 0-2 with the peers, the trivial same-class score, other-class LDS and unlearning against exact retraining.
# The report runs in two halves (two single-threaded processes fit the 2 cores; run them side by side by hand).
MATRIX_A := digits-convnet-K100-sgd,fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K100-momentum
MATRIX_B := digits-convnet-K40-momentum-wd,digits-convnet-groupnorm-K100-momentum,digits-resnet-K40-momentum,fmnist-convnet-K100-sgd
# `ddm run --calibrate` on the matrix's report configurations it calibrates (the four MLPs, seeds 0-2), scored on the
# check's held-out retrains (BENCHMARKS.md, "ddm run calibrates"); needs bench-matrix's workspaces.
CALIBRATED_MATRIX = $(foreach c,fmnist-mlp-K40-sgd digits-mlp-K40-sgd fmnist-mlp-K100-momentum fmnist-mlp-K40-adam,\
	$(foreach s,0 1 2,runs/matrix-b/$(c)/seed$(s)/ddm))
bench-calibrate-matrix: $(STAMP)
	$(BIN)/python benchmarks/calibrate_loose.py $(CALIBRATED_MATRIX) --root runs/calibrate \
	  --out benchmarks/results/calibrate-matrix

bench-matrix: $(STAMP)
	$(BIN)/python benchmarks/matrix.py --select --unlearn-dampings= --root runs/matrix-b \
	  --out benchmarks/results/matrix-select-balanced
	$(BIN)/python benchmarks/matrix.py --select --grid distill.checkpoints=1,3,5,10 --unlearn-dampings= \
	  --root runs/matrix-b --out benchmarks/results/matrix-select-checkpoints-balanced
	$(BIN)/python benchmarks/matrix.py --select --grid distill.keep_best=false,true --unlearn-dampings= \
	  --root runs/matrix-b --no-variants --out benchmarks/results/matrix-select-keep-best
	$(BIN)/python benchmarks/matrix.py --select --grid emulate.other_class_scale=1,0.7,0.5,0.4,0.3 \
	  --unlearn-dampings= --root runs/matrix-b --no-variants --out benchmarks/results/matrix-select-other-class-scale
	for c in digits-convnet-K100-sgd fmnist-mlp-K40-sgd; do \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --configs $$c \
	    --grid emulate.unlearn_damping=3e-5,1e-4,3e-4,1e-3 --out benchmarks/results/unlearn-damping-select-$$c && \
	  $(BIN)/python benchmarks/unlearn_references.py --select --root runs/matrix-b --configs $$c \
	    --alphas 0.9,0.99,0.999 --out benchmarks/results/unlearn-references-select-$$c || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --out benchmarks/results/matrix-a --configs $(MATRIX_A)
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --out benchmarks/results/matrix-b --configs $(MATRIX_B)
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix \
	  --render benchmarks/results/matrix-a.json,benchmarks/results/matrix-b.json
	$(BIN)/python benchmarks/unlearn_references.py --root runs/matrix-b --out benchmarks/results/unlearn-references

# EK-FAC influence (dattri, every Linear layer: an MLP's whole network) as a peer on the matrix (BENCHMARKS.md,
# "EK-FAC influence beside DDM"): its damping and Fisher chosen on the selection seed by the rule written before
# (benchmarks/results/probes-031/ekfac-rule.md), then the nine report configurations, seeds 0-2, on bench-matrix's
# retrains (the report ran as two single-threaded processes side by side, MLPs and ConvNets).
EKFAC_MLP := fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,fmnist-mlp-K100-momentum,fmnist-mlp-K40-adam
EKFAC_CONV := digits-convnet-K100-sgd,digits-convnet-K40-momentum-wd,digits-convnet-groupnorm-K100-momentum,fmnist-convnet-K100-sgd,digits-resnet-K40-momentum
bench-ekfac: $(STAMP)
	for d in None 0.1 0.01 0.001 1.0 10.0; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	    --seeds 3 --peers ekfac --peer-set ekfac_damping=$$d --no-variants \
	    --out benchmarks/results/ekfac-select-d$$(echo $$d | tr . _) || exit 1; done
	for d in None 0.1 0.01 0.001 1.0; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	    --seeds 3 --peers ekfac --peer-set ekfac_damping=$$d --peer-set ekfac_fisher=true --no-variants \
	    --out benchmarks/results/ekfac-select-true-d$$(echo $$d | tr . _) || exit 1; done
	for part in mlp:$(EKFAC_MLP) conv:$(EKFAC_CONV); do for s in 0 1,2; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $${part#*:} --seeds $$s \
	    --peers ekfac,if-explicit --peer-set ekfac_damping=0.1 --no-variants \
	    --out benchmarks/results/ekfac-report-$${part%%:*}-s$$(echo $$s | tr -d ,) || exit 1; done; done
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/ekfac-matrix --render \
	  benchmarks/results/ekfac-report-mlp-s0.json,benchmarks/results/ekfac-report-mlp-s12.json,benchmarks/results/ekfac-report-conv-s0.json,benchmarks/results/ekfac-report-conv-s12.json

# kronfluence's EK-FAC (every Linear and Conv2d layer: a ConvNet's whole network) as a peer on the matrix (BENCHMARKS.md,
# "kronfluence's EK-FAC beside DDM"): its damping chosen on the selection seed by the rule written before
# (benchmarks/results/probes-033/kronfluence-rule.md), then the nine report configurations, seeds 0-2, beside dattri's
# EK-FAC and last-layer influence on bench-matrix's retrains (two single-threaded processes side by side).
bench-kronfluence: $(STAMP)
	for d in None 1e-08 0.001 0.01 0.1 1.0; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	    --seeds 3 --peers kronfluence --peer-set kronfluence_damping=$$d --no-variants \
	    --out benchmarks/results/kronfluence-select-d$$(echo $$d | tr . _) || exit 1; done
	pids=""; for part in mlp:$(EKFAC_MLP) conv:$(EKFAC_CONV); do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $${part#*:} --seeds 0,1,2 \
	    --peers kronfluence,ekfac,if-explicit --peer-set kronfluence_damping=None --peer-set ekfac_damping=0.1 \
	    --no-variants --out benchmarks/results/kronfluence-report-$${part%%:*} & pids="$$pids $$!"; done; \
	for p in $$pids; do wait $$p || exit 1; done
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/kronfluence-matrix --render \
	  benchmarks/results/kronfluence-report-mlp.json,benchmarks/results/kronfluence-report-conv.json

# emulate.gradients=groups (the Newton step from the groups' own gradients, the default since 0.20): its held-out
# test (benchmarks/results/group-gradients-criterion.md: four probes run as a user would, then each scored both ways
# with the noisy-image and 100-class probes' workspaces where those exist, and the own loop's), the selection
# configurations and the report configurations, seeds 0-2 (BENCHMARKS.md, "The groups' own gradients in the Newton
# step"). The probes' checks were first run with the synsets' gradients, the default then; run now, their DDM row
# reads the groups' (the test's table, from group_gradients.py, sets each explicitly).
bench-gradients: $(STAMP)
	$(BIN)/ddm run -w runs/g/p1 --preset demo -q --set model.name=mlp --set model.width=96 --set model.depth=3 \
	  --set train.momentum=0.9 --set train.lr=0.02 --set cluster.per_class=6 --set model.seed=201 --set train.seed=201
	$(BIN)/ddm run -w runs/g/p2 --preset demo -q --dataset fashion-mnist --set data.train_size=2000 \
	  --set data.test_size=500 --set model.width=16 --set train.optimizer=adam --set train.lr=0.002 \
	  --set cluster.per_class=3 --set model.seed=202 --set train.seed=202
	$(BIN)/ddm run -w runs/g/p3 --preset demo -q --set model.norm=groupnorm --set train.lr=0.05 \
	  --set train.batch_size=32 --set cluster.per_class=5 --set model.seed=203 --set train.seed=203
	$(BIN)/ddm run -w runs/g/p4 --preset demo -q --dataset fashion-mnist --set data.train_size=3000 \
	  --set data.test_size=1000 --set model.name=mlp --set model.width=512 --set model.depth=1 --set train.lr=0.1 \
	  --set cluster.per_class=8 --set model.seed=204 --set train.seed=204
	for p in p1 p2 p3 p4; do $(BIN)/ddm check -w runs/g/$$p --peers if-explicit --try-temperature 0 -q \
	  > benchmarks/results/group-gradients-probe-$$p-check.txt || exit 1; done
	$(BIN)/python benchmarks/group_gradients.py $(wildcard runs/noisy/img-s2-step runs/rewind-probe/c100) \
	  runs/g/p1 runs/g/p2 runs/g/p3 runs/g/p4 --out benchmarks/results/group-gradients-test
	$(BIN)/python benchmarks/own_loop.py --configs fmnist-cnn-batchnorm-dropout-flip-adamw-steplr-K40 --peers if-explicit \
	  --set emulate.gradients=groups --reuse --out benchmarks/results/group-gradients-own-loop
	$(BIN)/python benchmarks/synset_resolution.py $(wildcard runs/noisy/img-s1-step runs/noisy/img-s2-step) \
	  runs/matrix-b/*/seed0/ddm   # the readings behind it (benchmarks/results/synset-resolution.md)
	$(BIN)/python benchmarks/matrix.py --select --grid emulate.gradients=synsets,groups --unlearn-dampings= \
	  --root runs/matrix-b --out benchmarks/results/matrix-select-gradients
	for m in groups synsets; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 0 --peers if-explicit --no-variants \
	    --configs $(MATRIX_A) --set emulate.gradients=$$m --out benchmarks/results/matrix-gradients-$$m-a && \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 0 --peers if-explicit --no-variants \
	    --configs $(MATRIX_B) --set emulate.gradients=$$m --out benchmarks/results/matrix-gradients-$$m-b && \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 1,2 --peers if-explicit --no-variants \
	    --configs $(MATRIX_A) --set emulate.gradients=$$m --out benchmarks/results/matrix-gradients-$$m-a-s12 && \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 1,2 --peers if-explicit --no-variants \
	    --configs $(MATRIX_B) --set emulate.gradients=$$m --out benchmarks/results/matrix-gradients-$$m-b-s12 \
	  || exit 1; done

# distill.ipc_grow (16 images where 4 stop short of the matching's tolerance): its selection, the unlearning damping
# chosen again with it, the report matrix, the held-out configurations and both dampings' unlearning (BENCHMARKS.md,
# "More images where the matching stops short").
AUTO_T_SEED0 := digits-alexnet-K40-adam,digits-convnet-K100-sgd,digits-convnet-K40-cosine,digits-convnet-K40-momentum-wd,digits-convnet-batchnorm-K40-momentum,digits-convnet-groupnorm-K100-momentum,digits-convnet-layernorm-K20-adam,digits-mlp-K100-adam,digits-mlp-K40-adam-cosine,digits-mlp-K40-adamw,digits-mlp-K40-sgd,digits-mlp-wide-K40-adam,digits-resnet-K40-momentum,digits-resnet-batchnorm-K40-momentum,digits-vit-K40-adam,fmnist-convnet-K100-sgd,fmnist-convnet-K40-momentum-wd,fmnist-convnet-d2-K40-adam,fmnist-mlp-K100-momentum,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd
AUTO_T_SEEDS12 := digits-alexnet-K40-adam,digits-convnet-K100-sgd,digits-convnet-K40-momentum-wd,digits-convnet-groupnorm-K100-momentum,digits-mlp-K40-sgd,digits-resnet-K40-momentum,digits-resnet-batchnorm-K40-momentum,fmnist-convnet-K100-sgd,fmnist-mlp-K100-momentum,fmnist-mlp-K40-adam,fmnist-mlp-K40-sgd
AUTO_T_NEW := digits-alexnet-K40-momentum,fmnist-alexnet-K40-adam,fmnist-resnet-batchnorm-K40-momentum,digits-mlp-K40-adam-long
SWITCH_GRID = --grid distill.head_temperature=2 --set emulate.other_class_scale=0.1
HELD_OUT_12 := digits-mlp-K100-adam,fmnist-convnet-K40-momentum-wd,digits-convnet-layernorm-K20-adam,digits-convnet-sequential-K40,fmnist-mlp-sequential-K50-sgd,digits-vit-K40-adam,digits-alexnet-K40-adam,digits-convnet-batchnorm-K40-momentum,fmnist-convnet-batchnorm-K40-sgd,digits-resnet-batchnorm-K40-momentum,digits-mlp-K40-adam-cosine,fmnist-mlp-K40-cosine
# bench-grow's numbers ran with distill.damping=1e-2, the default until 0.14 (commit 3edb9cd has it); bench-damping
# holds the change to 1e-3 and its measurements.
bench-damping: $(STAMP)
	for c in digits-convnet-K100-sgd fmnist-mlp-K40-sgd; do \
	  $(BIN)/python benchmarks/grid.py --configs $$c --seed 3 --grid distill.damping=1e-2,3e-3,1e-3 \
	    --out benchmarks/results/damping-top-select-$$c || exit 1; \
	  $(BIN)/python benchmarks/grid.py --configs $$c --seed 3 --grid distill.damping=1e-4,3e-4 \
	    --out benchmarks/results/damping-top-edge-select-$$c || exit 1; \
	  $(BIN)/python benchmarks/grid.py --configs $$c --seed 3 --set distill.damping_reference=mean \
	    --grid distill.damping=0.3,1,3 --out benchmarks/results/damping-mean-select-$$c || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_A) --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-damp-a
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_B) --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-damp-b
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_A) --seeds 1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-damp-a12
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_B) --seeds 1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-damp-b12
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix-damp-report --render \
	  benchmarks/results/matrix-damp-a.json,benchmarks/results/matrix-damp-b.json,benchmarks/results/matrix-damp-a12.json,benchmarks/results/matrix-damp-b12.json
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(HELD_OUT_12) --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-damp-held-out-s0
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b \
	  --configs digits-convnet-wide-K40-momentum,digits-mlp-wide-K40-sgd,fmnist-mlp-wide-K40-sgd,digits-mlp-wide-K40-adam,digits-convnet-wide-K40-adam \
	  --seeds 0 --peers if-explicit --no-variants --out benchmarks/results/matrix-damp-large-heads-s0
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-mlp-wide-K40-adam --seeds 1,2 \
	  --peers if-explicit --no-variants --out benchmarks/results/matrix-damp-wide-adam-s12
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix-damp-large-heads-wide-adam --render \
	  benchmarks/results/matrix-damp-large-heads-s0.json,benchmarks/results/matrix-damp-wide-adam-s12.json
	$(BIN)/python benchmarks/damping_schedule.py --root runs/matrix-b --seed 0 --out benchmarks/results/damping-schedule
	for c in digits-mlp-K40-adamw digits-convnet-K40-adamw; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $$c --seeds 0 --peers if-explicit,tracin \
	    --no-variants --out benchmarks/results/matrix-held-out-$$c-s0 || exit 1; \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $$c --seeds 1,2 --peers if-explicit,tracin \
	    --no-variants --out benchmarks/results/matrix-held-out-$$c-s12 || exit 1; done
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix-held-out-adamw --render \
	  benchmarks/results/matrix-held-out-digits-mlp-K40-adamw-s0.json,benchmarks/results/matrix-held-out-digits-mlp-K40-adamw-s12.json,benchmarks/results/matrix-held-out-digits-convnet-K40-adamw-s0.json,benchmarks/results/matrix-held-out-digits-convnet-K40-adamw-s12.json
	$(BIN)/python benchmarks/adamw_decay.py --seed 0 --configs digits-mlp-K40-adamw,digits-convnet-K40-adamw \
	  --out benchmarks/results/adamw-decay
	$(BIN)/python benchmarks/damping_head_proxy.py --seed 0 --configs fmnist-convnet-batchnorm-K40-sgd,digits-mlp-K100-adam \
	  --out benchmarks/results/damping-head-proxy-probe
	$(BIN)/python benchmarks/damping_head_proxy.py --seed 0 \
	  --configs digits-mlp-K40-sgd,fmnist-mlp-K100-momentum,digits-convnet-groupnorm-K100-momentum,fmnist-convnet-K40-momentum-wd \
	  --out benchmarks/results/damping-head-proxy-probe2

# `ddm check` (its defaults: 32 retrains) on seed 0's workspace of every configuration, beside the matrix's numbers
# (after bench-damping, whose seed-0 results it reads), in two halves.
CHECK_A := $(MATRIX_A),$(MATRIX_B),digits-convnet-wide-K40-momentum,digits-mlp-wide-K40-sgd,fmnist-mlp-wide-K40-sgd,digits-mlp-wide-K40-adam
CHECK_B := $(HELD_OUT_12),digits-convnet-wide-K40-adam
CHECK_M := benchmarks/results/matrix-damp-a.json,benchmarks/results/matrix-damp-b.json,benchmarks/results/matrix-damp-held-out-s0.json,benchmarks/results/matrix-damp-large-heads-s0.json
SCHEDULE_OTHERS := digits-convnet-batchnorm-K40-momentum,fmnist-convnet-K40-momentum-wd,digits-mlp-K40-sgd,digits-convnet-groupnorm-K100-momentum,fmnist-mlp-K40-adam,fmnist-convnet-K100-sgd
bench-check: $(STAMP)
	$(BIN)/python benchmarks/check_agreement.py --root runs/matrix-b --seed 0 --configs $(CHECK_A) --matrix $(CHECK_M) \
	  --out benchmarks/results/check-agreement-a
	$(BIN)/python benchmarks/check_agreement.py --root runs/matrix-b --seed 0 --configs $(CHECK_B) --matrix $(CHECK_M) \
	  --out benchmarks/results/check-agreement-b
	# the schedule term as ddm check fits and advises it, scored on the matrix's retrains (BENCHMARKS.md, "The schedule term")
	$(BIN)/python benchmarks/schedule_calibration.py --root runs/matrix-b --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	  --seed 3 --out benchmarks/results/schedule-calibration-select
	for s in 0 1 2; do $(BIN)/python benchmarks/schedule_calibration.py --root runs/matrix-b \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine --seed $$s \
	  --out benchmarks/results/schedule-calibration-misses-seed$$s || exit 1; done
	$(BIN)/python benchmarks/schedule_calibration.py --root runs/matrix-b --seed 0 --configs $(SCHEDULE_OTHERS) \
	  --out benchmarks/results/schedule-calibration-others-seed0
	# two or three retrains in place of the check's: the step effect and the regime's sign (BENCHMARKS.md, "The schedule term")
	$(BIN)/python benchmarks/schedule_steps.py --root runs/matrix-b --seed 3 --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	  --out benchmarks/results/schedule-steps-select
	$(BIN)/python benchmarks/schedule_steps.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS) --out benchmarks/results/schedule-steps-s0
	$(BIN)/python benchmarks/schedule_detector.py --root runs/matrix-b --seed 3 --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	  --out benchmarks/results/schedule-detector-select
	$(BIN)/python benchmarks/schedule_detector.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS),fmnist-mlp-K100-momentum,digits-resnet-K40-momentum \
	  --out benchmarks/results/schedule-detector-s0
	for s in 1 2; do $(BIN)/python benchmarks/schedule_detector.py --root runs/matrix-b --seed $$s \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine --out benchmarks/results/schedule-detector-s$$s || exit 1; done
	# the class balance as ddm check refits and advises it, and all of the check's advice followed (BENCHMARKS.md,
	# "The class balance, refitted by ddm check")
	$(BIN)/python benchmarks/balance_calibration.py --root runs/matrix-b --seed 3 --out benchmarks/results/balance-calibration-select
	$(BIN)/python benchmarks/balance_calibration.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS) \
	  --out benchmarks/results/balance-calibration-seed0
	for s in 1 2; do $(BIN)/python benchmarks/balance_calibration.py --root runs/matrix-b --seed $$s \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine \
	  --out benchmarks/results/balance-calibration-seed$$s || exit 1; done
	for s in 0 1 2; do $(BIN)/python benchmarks/balance_calibration.py --root runs/matrix-b --seed $$s --halves-only --shrink \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum \
	  --out benchmarks/results/balance-calibration-held-out-seed$$s || exit 1; done
	for s in 0 1 2; do $(BIN)/python benchmarks/balance_calibration.py --root runs/matrix-b --seed $$s --halves-only \
	  --configs digits-mlp-wide-K40-adam --out benchmarks/results/balance-calibration-wide-adam-seed$$s || exit 1; done
	# the emulation's damping as ddm check refits and advises it (BENCHMARKS.md, "The emulation's damping, refitted by
	# ddm check")
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 3 --out benchmarks/results/damping-calibration-select
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS) \
	  --out benchmarks/results/damping-calibration-seed0
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 --halves-only \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/damping-calibration-held-out-seed0
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 1 \
	  --configs fmnist-convnet-K100-sgd,fmnist-convnet-K40-momentum-wd --out benchmarks/results/damping-calibration-fmnist-convnets-seed1
	for n in 16 32; do $(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 --calibration-subsets $$n \
	  --configs digits-resnet-K40-momentum,fmnist-mlp-K100-momentum \
	  --out benchmarks/results/damping-calibration-report-rest-seed0$$( [ $$n = 32 ] && echo -cal32 ) || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs fmnist-convnet-d2-K40-adam --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-held-out-fmnist-convnet-d2-s0
	for n in 16 32; do $(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 --calibration-subsets $$n \
	  --configs fmnist-convnet-d2-K40-adam \
	  --out benchmarks/results/damping-calibration-fmnist-convnet-d2-seed0$$( [ $$n = 32 ] && echo -cal32 ) || exit 1; done
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 3 --calibration-subsets 32 \
	  --out benchmarks/results/damping-calibration-select-cal32
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 --calibration-subsets 32 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS) \
	  --out benchmarks/results/damping-calibration-seed0-cal32
	$(BIN)/python benchmarks/damping_calibration.py --root runs/matrix-b --seed 0 --halves-only --calibration-subsets 32 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/damping-calibration-held-out-seed0-cal32
	# the check with 200 targets instead of 50 (BENCHMARKS.md, "More targets for ddm check"): the damping rule alone,
	# then everything the check advises, followed
	$(BIN)/python benchmarks/check_targets.py --root runs/matrix-b --seed 3 --out benchmarks/results/check-targets-select
	$(BIN)/python benchmarks/check_targets.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS),digits-resnet-K40-momentum,fmnist-mlp-K100-momentum,fmnist-convnet-d2-K40-adam \
	  --out benchmarks/results/check-targets-seed0
	$(BIN)/python benchmarks/check_targets.py --root runs/matrix-b --seed 0 --halves-only \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/check-targets-held-out-seed0
	$(BIN)/python benchmarks/check_targets.py --root runs/matrix-b --seed 1 \
	  --configs fmnist-convnet-K100-sgd,fmnist-convnet-K40-momentum-wd --out benchmarks/results/check-targets-seed1
	$(BIN)/python benchmarks/check_advice.py --root runs/matrix-b --seed 3 --out benchmarks/results/check-advice-select
	$(BIN)/python benchmarks/check_advice.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS) \
	  --out benchmarks/results/check-advice-seed0
	for s in 1 2; do $(BIN)/python benchmarks/check_advice.py --root runs/matrix-b --seed $$s \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine --out benchmarks/results/check-advice-misses-seed$$s \
	  || exit 1; done
	for s in 0 1 2; do $(BIN)/python benchmarks/check_advice.py --root runs/matrix-b --seed $$s --halves-only \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/check-advice-held-out-seed$$s || exit 1; done
	# the check's tempered synset (--try-temperature 2), followed as a user would (BENCHMARKS.md, "ddm check tries a
	# tempered synset")
	$(BIN)/python benchmarks/check_temperature.py --root runs/matrix-b --seed 3 --out benchmarks/results/check-temperature-select
	for s in 0 1 2; do $(BIN)/python benchmarks/check_temperature.py --root runs/matrix-b --seed $$s \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/check-temperature-held-out-seed$$s || exit 1; done
	$(BIN)/python benchmarks/check_temperature.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K100-momentum,fmnist-convnet-K40-momentum-wd,fmnist-mlp-K40-sgd \
	  --out benchmarks/results/check-temperature-others-a-seed0
	$(BIN)/python benchmarks/check_temperature.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-batchnorm-K40-momentum,digits-convnet-groupnorm-K100-momentum,digits-resnet-K40-momentum,fmnist-convnet-K100-sgd,fmnist-convnet-d2-K40-adam \
	  --out benchmarks/results/check-temperature-others-b-seed0
	$(BIN)/python benchmarks/check_temperature.py --root runs/matrix-b --seed 0 \
	  --configs digits-mlp-K40-adam-cosine,digits-mlp-K40-adamw,digits-mlp-K100-adam,digits-convnet-layernorm-K20-adam,digits-vit-K40-adam \
	  --out benchmarks/results/check-temperature-new-seed0

bench-grow: $(STAMP)
	$(BIN)/python benchmarks/matrix.py --select --grid distill.ipc_grow=0,16 --unlearn-dampings= --peers "" \
	  --root runs/matrix-b --no-variants --out benchmarks/results/matrix-select-ipc-grow
	for c in digits-convnet-K100-sgd fmnist-mlp-K40-sgd; do \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --configs $$c \
	    --grid emulate.unlearn_damping=1e-3,3e-3,1e-2 --out benchmarks/results/unlearn-damping-grow-select-$$c || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_A) --seeds 0,1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-grow-a
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_B) --seeds 0,1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-grow-b
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix-grow \
	  --render benchmarks/results/matrix-grow-a.json,benchmarks/results/matrix-grow-b.json
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(HELD_OUT_12) --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-grow-held-out-s0
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(HELD_OUT_12) --seeds 1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-grow-held-out-s12-all
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-wide-K40-momentum,digits-mlp-wide-K40-sgd \
	  --seeds 0,1,2 --peers if-explicit --no-variants --out benchmarks/results/matrix-grow-held-out-large-heads
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_A),digits-mlp-wide-K40-sgd --seeds 0 \
	  --peers "" --no-variants --set emulate.unlearn_damping=3e-3 --out benchmarks/results/matrix-grow-unlearn-a
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_B),digits-convnet-wide-K40-momentum --seeds 0 \
	  --peers "" --no-variants --set emulate.unlearn_damping=3e-3 --out benchmarks/results/matrix-grow-unlearn-b
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(HELD_OUT_12) --seeds 0 \
	  --peers "" --no-variants --set emulate.unlearn_damping=3e-3 --out benchmarks/results/matrix-grow-unlearn-held-out
	for c in digits-convnet-K100-sgd fmnist-mlp-K40-sgd; do \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --configs $$c \
	    --grid emulate.unlearn_curvature=images,group --out benchmarks/results/unlearn-curvature-select-$$c || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(MATRIX_A),$(MATRIX_B),digits-mlp-wide-K40-sgd,digits-convnet-wide-K40-momentum \
	  --seeds 0 --peers "" --no-variants --set emulate.unlearn_curvature=group --out benchmarks/results/matrix-grow-group
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $(HELD_OUT_12) --seeds 0 \
	  --peers "" --no-variants --set emulate.unlearn_curvature=group --out benchmarks/results/matrix-grow-group-held-out
	$(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --draws 8 \
	  --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd,digits-convnet-wide-K40-momentum \
	  --grid emulate.unlearn_curvature=images,group --out benchmarks/results/unlearn-curvature-select8-a
	$(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --draws 8 \
	  --configs digits-mlp-wide-K40-sgd --grid emulate.unlearn_curvature=images,group \
	  --out benchmarks/results/unlearn-curvature-select8-b
	for c in fmnist-mlp-wide-K40-sgd digits-mlp-wide-K40-adam; do \
	  $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs $$c --seeds 0 --peers if-explicit --no-variants \
	    --out benchmarks/results/matrix-held-out-large-heads-$$c || exit 1; done
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-convnet-wide-K40-adam --seeds 0 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-held-out-large-heads-digits-convnet-wide-K40-adam
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-mlp-wide-K40-adam --seeds 1,2 --peers if-explicit \
	  --no-variants --out benchmarks/results/matrix-held-out-large-heads-digits-mlp-wide-K40-adam-s12
	$(BIN)/python benchmarks/matrix.py --out benchmarks/results/matrix-held-out-large-heads-digits-mlp-wide-K40-adam-all \
	  --render benchmarks/results/matrix-held-out-large-heads-digits-mlp-wide-K40-adam.json,benchmarks/results/matrix-held-out-large-heads-digits-mlp-wide-K40-adam-s12.json
	$(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 0 --draws 3 \
	  --configs digits-convnet-wide-K40-adam,fmnist-mlp-wide-K40-sgd,digits-mlp-wide-K40-adam \
	  --grid emulate.unlearn_curvature=images,group --out benchmarks/results/unlearn-curvature-held-out-large-heads
	$(BIN)/python benchmarks/head_bound.py --seed 0 --configs digits-mlp-wide-K40-adam \
	  --out benchmarks/results/head-bound-wide-adam-seed0
	$(BIN)/python benchmarks/deeper_step.py --configs digits-mlp-wide-K40-adam --seed 0 --scopes head \
	  --sources real,synset --damping 1e-3,1e-2 --checkpoints --out benchmarks/results/deeper-step-wide-adam-seed0

# The same matrix scored against each subset's retrained loss averaged over 3 data orders (the target's and two
# others: twice the retrains of bench-matrix, which it reuses), which takes out most of the data order's noise.
bench-matrix-orders: $(STAMP)
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --orders 3 --out benchmarks/results/matrix-orders-a \
	  --configs $(MATRIX_A)
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --orders 3 --out benchmarks/results/matrix-orders-b \
	  --configs $(MATRIX_B)
	$(BIN)/python benchmarks/matrix.py --orders 3 --out benchmarks/results/matrix-orders \
	  --render benchmarks/results/matrix-orders-a.json,benchmarks/results/matrix-orders-b.json

# What the remaining misses are made of (diagnostics on the selection seed, 3, with its validation targets; they
# change no default): retraining's own ceiling, the schedule effect on every configuration, the damping past the
# selection grid's edge, and the unlearning prior shift (selection on seeds 3-4, then the report configurations).
MLPS := fmnist-mlp-K40-sgd,fmnist-mlp-K40-adam,digits-mlp-K40-sgd,fmnist-mlp-K100-momentum
bench-diagnostics: $(STAMP)
	$(BIN)/python benchmarks/ceiling.py --root runs/matrix-b --out benchmarks/results/ceiling
	# readings of a workspace against its best emulation damping (BENCHMARKS.md, "The emulation's damping, refitted")
	$(BIN)/python benchmarks/feature_share.py --root runs/matrix-b --seed 3 --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	  --out benchmarks/results/feature-share-select
	$(BIN)/python benchmarks/feature_share.py --root runs/matrix-b --seed 1 \
	  --configs fmnist-convnet-K100-sgd,fmnist-convnet-K40-momentum-wd --out benchmarks/results/feature-share-seed1
	$(BIN)/python benchmarks/feature_share.py --root runs/matrix-b --seed 0 \
	  --configs digits-convnet-K40-momentum-wd,digits-convnet-K40-cosine,$(SCHEDULE_OTHERS),digits-resnet-K40-momentum,fmnist-mlp-K100-momentum,digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam,fmnist-convnet-d2-K40-adam \
	  --out benchmarks/results/feature-share-seed0
	$(BIN)/python benchmarks/adam_damping.py --root runs/matrix-b --seed 0 --configs fmnist-mlp-K40-adam \
	  --out benchmarks/results/adam-damping-seed0
	$(BIN)/python benchmarks/adam_damping.py --root runs/matrix-b --seed 0 --halves-only \
	  --configs digits-alexnet-K40-adam,fmnist-convnet-d2-K40-adam,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/adam-damping-held-out-seed0
	# the kept data's curvature in the attribution emulation (real gradients)
	$(BIN)/python benchmarks/kept_curvature.py --configs fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,digits-mlp-K100-adam \
	  --seed 3 --out benchmarks/results/kept-curvature-seed3
	# the best any last-layer method can do: the last layer retrained exactly on theta_tau's features
	$(BIN)/python benchmarks/head_bound.py --seed 0 --out benchmarks/results/head-bound-seed0 \
	  --configs digits-resnet-batchnorm-K40-momentum,digits-resnet-K40-momentum,digits-convnet-batchnorm-K40-momentum
	$(BIN)/python benchmarks/head_bound.py --seed 0 --out benchmarks/results/head-bound-alexnet-seed0 \
	  --configs digits-alexnet-K40-adam
	# own class against the others in the emulation's weights (what the class balance corrects)
	$(BIN)/python benchmarks/class_balance.py --root runs/matrix-b --scales 0.7,0.5,0.4,0.3,0.2 \
	  --out benchmarks/results/class-balance-selection
	for s in 0 1 2; do $(BIN)/python benchmarks/class_balance.py --root runs/matrix-b --configs digits-mlp-K40-sgd \
	  --seed $$s --scales 0.7,0.5,0.4,0.3,0.2 --out benchmarks/results/class-balance-digits-mlp-seed$$s || exit 1; done
	$(BIN)/python benchmarks/class_balance.py --root runs/matrix-b --configs digits-alexnet-K40-adam --seed 1 \
	  --scales 0.7,0.5,0.4,0.3,0.2 --out benchmarks/results/class-balance-alexnet-seed1
	# the TracIn peer exact against dattri's default random projection (what the TracIn numbers before 0.18 used)
	$(BIN)/python benchmarks/tracin_projection.py --root runs/matrix-b --seed 0 \
	  --configs fmnist-mlp-K40-sgd,digits-convnet-K40-momentum-wd --out benchmarks/results/tracin-projection-s0
	# theta_tau's share of the checkpoint-averaged Newton step (the default: an equal share)
	$(BIN)/python benchmarks/checkpoint_weight.py --root runs/matrix-b --seed 3 \
	  --configs fmnist-mlp-K40-sgd,digits-convnet-K100-sgd --out benchmarks/results/checkpoint-weight-select
	$(BIN)/python benchmarks/checkpoint_weight.py --root runs/matrix-b --seed 0 --out benchmarks/results/checkpoint-weight-held-out-s0 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam,digits-convnet-K40-momentum-wd,fmnist-mlp-K40-sgd
	$(BIN)/python benchmarks/checkpoint_weight.py --root runs/matrix-b --seed 0 --set distill.head_temperature=2 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum --out benchmarks/results/checkpoint-weight-t2-held-out-s0
	# the default's automatic temperature (distill.auto_temperature): where it switches on every stored run, what it gives
	# there, and on the four configurations added to score it (BENCHMARKS.md, "A tempered synset where the step
	# agreement is low")
	$(BIN)/python benchmarks/auto_temperature.py --root runs/matrix-b --seed 3 --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd \
	  --out benchmarks/results/auto-temperature-select
	$(BIN)/python benchmarks/auto_temperature.py --root runs/matrix-b --seed 0 --configs $(AUTO_T_SEED0) \
	  --out benchmarks/results/auto-temperature-s0
	for s in 1 2; do $(BIN)/python benchmarks/auto_temperature.py --root runs/matrix-b --seed $$s --configs $(AUTO_T_SEEDS12) \
	  --out benchmarks/results/auto-temperature-s$$s || exit 1; done
	for s in 1 2; do $(BIN)/python benchmarks/auto_temperature.py --root runs/matrix-b --seed $$s --halves-only \
	  --configs digits-mlp-wide-K40-adam --out benchmarks/results/auto-temperature-wide-s$$s || exit 1; done
	$(BIN)/python benchmarks/auto_temperature.py --root runs/matrix-b --seed 0 --score-all --configs $(AUTO_T_NEW) \
	  --out benchmarks/results/auto-temperature-held-out-new
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --seeds 0 --peers if-explicit --no-variants \
	  --configs $(AUTO_T_NEW) --out benchmarks/results/matrix-held-out-auto-temperature
	# the class balance following the switch: chosen on the threshold's two seed-0 runs, reported on the other switched runs
	$(BIN)/python benchmarks/switched_balance.py --root runs/matrix-b --seed 0 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum --out benchmarks/results/switched-balance-select
	for s in 1 2; do $(BIN)/python benchmarks/switched_balance.py --root runs/matrix-b --seed $$s \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum \
	  --out benchmarks/results/switched-balance-s$$s || exit 1; done
	$(BIN)/python benchmarks/switched_balance.py --root runs/matrix-b --seed 0 --configs digits-alexnet-K40-momentum \
	  --out benchmarks/results/switched-balance-held-out-s0
	for s in 1 2; do $(BIN)/python benchmarks/switched_balance.py --root runs/matrix-b --seed $$s --halves-only \
	  --configs digits-mlp-wide-K40-adam --out benchmarks/results/switched-balance-wide-s$$s || exit 1; done
	# the switch's threshold: what a switch gives on every stored unswitched run from 0.7 to 0.9, and the choice
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 0 $(SWITCH_GRID) --configs \
	  digits-mlp-wide-K40-adam,fmnist-resnet-batchnorm-K40-momentum,fmnist-convnet-d2-K40-adam,digits-mlp-K100-adam,digits-mlp-K40-sgd,digits-convnet-groupnorm-K100-momentum,digits-mlp-K40-adamw,digits-vit-K40-adam \
	  --out benchmarks/results/switch-threshold-grid-s0a
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 0 $(SWITCH_GRID) --configs \
	  digits-convnet-layernorm-K20-adam,digits-convnet-batchnorm-K40-momentum,fmnist-alexnet-K40-adam,fmnist-mlp-K40-adam,fmnist-mlp-K100-momentum,fmnist-convnet-K100-sgd,fmnist-convnet-K40-momentum-wd \
	  --out benchmarks/results/switch-threshold-grid-s0b
	for s in 1 2; do $(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed $$s $(SWITCH_GRID) \
	  --configs digits-resnet-K40-momentum,digits-mlp-K40-sgd,digits-convnet-groupnorm-K100-momentum \
	  --out benchmarks/results/switch-threshold-grid-s$$s || exit 1; done
	$(BIN)/python benchmarks/switch_threshold.py benchmarks/results/switch-threshold-grid-s0a.json \
	  benchmarks/results/switch-threshold-grid-s0b.json benchmarks/results/switch-threshold-grid-s1.json \
	  benchmarks/results/switch-threshold-grid-s2.json --out benchmarks/results/switch-threshold
	# the class-level synset following the switch, a higher temperature on the switched runs, and the ceilings there
	$(BIN)/python benchmarks/class_temperature.py --root runs/matrix-b --seed 0 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-alexnet-K40-momentum \
	  --out benchmarks/results/class-temperature-s0
	for s in 1 2; do $(BIN)/python benchmarks/class_temperature.py --root runs/matrix-b --seed $$s \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-mlp-wide-K40-adam \
	  --out benchmarks/results/class-temperature-s$$s || exit 1; done
	$(BIN)/python benchmarks/class_temperature.py --root runs/matrix-b --seed 3 --score-all \
	  --configs digits-convnet-K100-sgd,fmnist-mlp-K40-sgd --out benchmarks/results/class-temperature-select
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 0 --grid distill.head_temperature=2,3,4 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum,digits-alexnet-K40-momentum \
	  --out benchmarks/results/auto-temperature-t-escalate-s0
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 1 --grid distill.head_temperature=2,3,4 \
	  --configs digits-alexnet-K40-adam,digits-mlp-wide-K40-adam --out benchmarks/results/auto-temperature-t-escalate-s1
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 1 --grid distill.head_temperature=2,3,4 \
	  --configs digits-resnet-batchnorm-K40-momentum --out benchmarks/results/auto-temperature-t-escalate-bn-s1
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 2 --grid distill.head_temperature=2,3,4 \
	  --configs digits-alexnet-K40-adam,digits-resnet-batchnorm-K40-momentum --out benchmarks/results/auto-temperature-t-escalate-s2
	$(BIN)/python benchmarks/grid.py --root runs/matrix-b --seed 2 --grid distill.head_temperature=2,3,4 \
	  --configs digits-mlp-wide-K40-adam --out benchmarks/results/auto-temperature-t-escalate-wide-s2
	$(BIN)/python benchmarks/ceiling.py --root runs/matrix-b --seed 0 \
	  --configs digits-alexnet-K40-momentum,digits-resnet-batchnorm-K40-momentum --out benchmarks/results/ceiling-held-out-new-a
	$(BIN)/python benchmarks/ceiling.py --root runs/matrix-b --seed 1 \
	  --configs digits-resnet-batchnorm-K40-momentum,digits-alexnet-K40-adam --out benchmarks/results/ceiling-held-out-seed1
	# unlearning with the current default on the report configurations, seeds 0-2 (BENCHMARKS.md, "Unlearning rerun
	# with the current default")
	for s in 0 1,2; do \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds $$s --grid emulate.unlearn_rewind=1 \
	    --configs fmnist-convnet-K100-sgd,fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam \
	    --out benchmarks/results/unlearn-refresh-$$(test $$s = 0 && echo a || echo s12-a) || exit 1; \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds $$s --grid emulate.unlearn_rewind=1 \
	    --configs digits-resnet-K40-momentum,digits-convnet-groupnorm-K100-momentum,digits-convnet-K40-momentum-wd,digits-convnet-K100-sgd,fmnist-mlp-K100-momentum \
	    --out benchmarks/results/unlearn-refresh-$$(test $$s = 0 && echo b || echo s12-b) || exit 1; done
	# the rewind's guard (BENCHMARKS.md, "The rewind's guard"): selection seed, report seeds, held-out configurations
	$(BIN)/python benchmarks/unlearn_rewind_guard.py --configs fmnist-mlp-K40-sgd --seeds 3 \
	  --out benchmarks/results/unlearn-rewind-guard-select
	$(BIN)/python benchmarks/unlearn_rewind_guard.py --configs fmnist-mlp-K40-sgd --seeds 0 \
	  --out benchmarks/results/unlearn-rewind-guard-report
	$(BIN)/python benchmarks/unlearn_rewind_guard.py --seeds 0 \
	  --configs fmnist-mlp-sequential-K50-sgd,fmnist-mlp-wide-K40-sgd,fmnist-convnet-K100-sgd,fmnist-mlp-K100-momentum \
	  --out benchmarks/results/unlearn-rewind-guard-held-out
	$(BIN)/python benchmarks/unlearn_rewind_guard.py --seeds 0 --configs digits-convnet-K100-sgd,digits-convnet-K40-cosine,\
	digits-convnet-K40-momentum-wd,digits-convnet-d2-K100-sgd,digits-convnet-d2-K40-momentum-wd,\
	digits-convnet-d2-groupnorm-K100-momentum,digits-convnet-groupnorm-K40-momentum-wd,digits-convnet-K100-adam-wd,\
	digits-mlp-K40-sgd,fmnist-mlp-K40-adam --out benchmarks/results/unlearn-rewind-guard-others
	$(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 1,2 --configs fmnist-mlp-K40-sgd \
	  --grid emulate.unlearn_rewind_guard=false,true --out benchmarks/results/unlearn-rewind-guard-matrix-s12
	$(BIN)/python benchmarks/unlearn_agreement.py --seeds 0 --grid emulate.unlearn_rewind=0,1 \
	  --configs fmnist-mlp-K40-sgd,digits-mlp-K40-sgd,fmnist-mlp-K40-adam,fmnist-mlp-K100-momentum,fmnist-convnet-K100-sgd \
	  --out benchmarks/results/unlearn-agreement-rewind-a
	$(BIN)/python benchmarks/unlearn_agreement.py --seeds 0 --grid emulate.unlearn_rewind=0,1 \
	  --configs digits-convnet-K100-sgd,digits-convnet-K40-momentum-wd,digits-convnet-groupnorm-K40-momentum-wd,\
	digits-convnet-d2-K100-sgd,digits-convnet-d2-K40-momentum-wd,digits-convnet-d2-groupnorm-K100-momentum \
	  --out benchmarks/results/unlearn-agreement-rewind-b
	# a retrain-free detector of the schedule term's regime, tried (BENCHMARKS.md, "The schedule term")
	$(BIN)/python benchmarks/sharpness.py --root runs/matrix-b digits-convnet-K40-momentum-wd:0 digits-convnet-K40-momentum-wd:1 \
	  digits-convnet-K40-cosine:0 digits-convnet-K100-sgd:3 fmnist-convnet-K40-momentum-wd:0 \
	  digits-convnet-batchnorm-K40-momentum:0 digits-convnet-groupnorm-K100-momentum:0 fmnist-convnet-K100-sgd:0 \
	  digits-mlp-K40-sgd:0 fmnist-mlp-K40-sgd:3 digits-resnet-K40-momentum:0 fmnist-mlp-K100-momentum:0 \
	  --out benchmarks/results/sharpness
	# the unlearning scope diagnostic over the whole network
	$(BIN)/python benchmarks/unlearn_scope.py --root runs/matrix-b --configs fmnist-mlp-K40-sgd --seeds 0,3 --scopes head,all \
	  --dampings 1e-4,3e-4,1e-3,1e-2 --out benchmarks/results/unlearn-scope-all-fmnist-mlp
	$(BIN)/python benchmarks/unlearn_scope.py --root runs/matrix-b --configs digits-convnet-K40-momentum-wd --seeds 0 \
	  --scopes all --dampings 1e-4,3e-4,1e-3,1e-2 --out benchmarks/results/unlearn-scope-all-wd
	# on what scale the schedule effect would have to be added to DDM
	$(BIN)/python benchmarks/count_effect.py --root runs/matrix-b --out benchmarks/results/count-effect-selection
	for s in 0 1 2; do $(BIN)/python benchmarks/count_effect.py --root runs/matrix-b --seed $$s \
	  --configs digits-convnet-K40-momentum-wd --out benchmarks/results/count-effect-momentum-wd-seed$$s || exit 1; done
	# what keep_best changes in the synsets, without retraining
	$(BIN)/python benchmarks/synset_change.py --root runs/matrix-b --seeds 0 --set distill.keep_best=false \
	  --out benchmarks/results/synset-change-keep-best
	$(BIN)/python benchmarks/schedule_effect.py --root runs/matrix-b --configs $(MATRIX_A),$(MATRIX_B),\
	fmnist-convnet-K40-momentum-wd,digits-convnet-K100-adam-wd --out benchmarks/results/schedule-effect-all
	$(BIN)/python benchmarks/schedule_effect.py --root runs/matrix-b --configs digits-convnet-K40-momentum-wd,\
	digits-convnet-K40-momentum,digits-convnet-K40-sgd-lr0.2,digits-convnet-K40-sgd-lr0.1,digits-convnet-K100-sgd-lr0.2 \
	  --out benchmarks/results/schedule-effect-lr
	$(BIN)/python benchmarks/matrix.py --select --grid distill.damping=1e-2,3e-2,1e-1 --unlearn-dampings= \
	  --root runs/matrix-b --out benchmarks/results/matrix-select-damping-edge
	$(BIN)/python benchmarks/matrix.py --select --grid emulate.readout=logits,checkpoints --unlearn-dampings= \
	  --root runs/matrix-b --out benchmarks/results/matrix-select-readout
	$(BIN)/python benchmarks/matrix.py --select --set distill.checkpoints=5 --grid emulate.readout=logits,checkpoints \
	  --unlearn-dampings= --root runs/matrix-b-ckpt5 --out benchmarks/results/matrix-select-readout-checkpoints5
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --peers if-explicit --configs $(MLPS) \
	  --out benchmarks/results/readout-report-mlp-default
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b-readout --peers if-explicit --set emulate.readout=checkpoints \
	  --set distill.checkpoints=5 --configs $(MLPS) --out benchmarks/results/readout-report-mlp-checkpoints5
	for c in digits-convnet-K100-sgd fmnist-mlp-K40-sgd; do \
	  $(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 3,4 --configs $$c \
	    --grid emulate.unlearn_prior_shift=0,0.5,1,2 --out benchmarks/results/unlearn-prior-shift-select-$$c || exit 1; done
	$(BIN)/python benchmarks/unlearn_rewind.py --root runs/matrix-b --seeds 0 --configs $(MATRIX_A),$(MATRIX_B) \
	  --grid emulate.unlearn_prior_shift=0,1,2 --out benchmarks/results/unlearn-prior-shift-report
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed 2 --orders 3 --damping 1e-2,1e-1 \
	  --out benchmarks/results/deeper-step-resnet-seed2
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed 2 --orders 3 --damping 1e-3,3e-3 \
	  --out benchmarks/results/deeper-step-resnet-seed2-small
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed 3 --orders 3 --scopes "head,last block + head" \
	  --damping 1e-3,1e-2 --out benchmarks/results/deeper-step-resnet-seed3
	for s in 2 3 0 1; do $(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed $$s --orders 3 \
	  --scopes "head,last block + head" --sources real --checkpoints --damping 1e-3,1e-2 \
	  --out benchmarks/results/deeper-step-resnet-seed$$s-checkpoints || exit 1; done
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --configs digits-convnet-K40-momentum-wd --seed 3 \
	  --damping 1e-3,1e-2 --out benchmarks/results/deeper-step-momentum-wd-seed3
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed 3 --scopes "head,last block + head" \
	  --configs digits-mlp-K40-sgd,fmnist-mlp-K40-sgd,digits-convnet-groupnorm-K100-momentum --damping 1e-3,1e-2 \
	  --out benchmarks/results/deeper-step-others-seed3
	# the step on the Gauss-Newton matrix's leading eigenvectors; synsets matched again over the last block
	for s in 3 2; do $(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed $$s --orders 3 \
	  --scopes "last block + head" --damping 1e-3 --sources real --checkpoints --ranks 100,300 \
	  --out benchmarks/results/deeper-step-resnet-seed$$s-ranks || exit 1; done
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed 3 --orders 3 --scopes "last block + head" \
	  --damping 1e-3,1e-2 --sources synset --checkpoints --ranks 100,300 \
	  --out benchmarks/results/deeper-step-resnet-seed3-ranks-synset
	for s in 3 2; do $(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --seed $$s --orders 3 \
	  --scopes "last block + head" --damping 1e-3 --sources rematched --checkpoints --ranks 300 \
	  --out benchmarks/results/deeper-step-resnet-seed$$s-rematch || exit 1; done
	$(BIN)/python benchmarks/deeper_step.py --root runs/matrix-b --configs fmnist-mlp-K40-sgd,digits-convnet-K100-sgd \
	  --seed 3 --orders 3 --scopes "head,last block + head" --damping 1e-3,1e-2 --sources real --checkpoints \
	  --ranks 300 --out benchmarks/results/deeper-step-selection-seed3-ranks
	# the block recipe (ddm.distill.block) against the default on the selection configurations
	$(BIN)/python benchmarks/matrix.py --select --grid distill.matching=head,block --unlearn-dampings= \
	  --root runs/matrix-b --out benchmarks/results/matrix-select-block
	# the block recipe on the ResNet's report seeds (measured once, after that selection)
	for s in 0 1 2; do $(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs digits-resnet-K40-momentum \
	  --seeds $$s --orders 3 --peers "" --set distill.matching=block \
	  --out benchmarks/results/matrix-resnet-block-s$$s || exit 1; done
	$(BIN)/python benchmarks/matrix.py --orders 3 --out benchmarks/results/matrix-resnet-block --render \
	  benchmarks/results/matrix-resnet-block-s0.json,benchmarks/results/matrix-resnet-block-s1.json,benchmarks/results/matrix-resnet-block-s2.json
	# the training run differentiated (Gauss-Newton tangents through the recorded SGD run), whole and truncated
	$(BIN)/python benchmarks/metagradient.py --root runs/matrix-b --starts 0,10,15,18,19 \
	  --configs digits-convnet-K40-momentum-wd --out benchmarks/results/metagradient-momentum-wd
	$(BIN)/python benchmarks/metagradient.py --root runs/matrix-b --starts 10,15,18,19 \
	  --configs digits-convnet-K100-sgd --out benchmarks/results/metagradient-convnet-K100
	$(BIN)/python benchmarks/metagradient.py --root runs/matrix-b --starts 0 \
	  --configs digits-convnet-K100-sgd --out benchmarks/results/metagradient-convnet-K100-full
	# unlearning: the exact last-layer retrain beside the reference unlearners; a step over the last block too
	$(BIN)/python benchmarks/unlearn_references.py --root runs/matrix-b --out benchmarks/results/unlearn-references
	$(BIN)/python benchmarks/unlearn_scope.py --root runs/matrix-b --dampings 1e-3,1e-2 \
	  --out benchmarks/results/unlearn-scope
	# the held-out sequential MLP with emulate.min_transfer (the one stored run it changes)
	$(BIN)/python benchmarks/matrix.py --root runs/matrix-b --configs fmnist-mlp-sequential-K50-sgd --seeds 0,1,2 \
	  --peers if-explicit --no-variants --out benchmarks/results/matrix-held-out-min-transfer

# Stage costs in units of one training run, peak memory, throughput, growth in N and K (issue "Fast where it counts").
bench-perf: $(STAMP)
	$(BIN)/python benchmarks/perf.py --repeats 5 --root runs/perf --out benchmarks/results/perf

# Cost against N (1k -> 60k Fashion-MNIST) and K (40 -> 1,000), with the retraining it replaces.
bench-scaling-perf: $(STAMP)
	$(BIN)/python benchmarks/perf.py --growth-only --per-class 4,10,20,40,100 \
	  --sizes 1000,5000,10000,20000,60000 --root runs/scaling --out benchmarks/results/scaling

# ResNet-18 (GroupNorm) on Fashion-MNIST 60k (and CIFAR-10 when present) on a GPU; ARGS=--smoke runs the
# reduced size on any machine (tests/test_bench_gpu.py covers it). Not part of `make bench` (it needs a GPU).
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu.py --out benchmarks/results/gpu$(if $(findstring --smoke,$(ARGS)),-smoke,) $(ARGS)

# The head distillation's step budget, on the matrix's selection configurations (needs bench-matrix's retrains).
bench-budget: $(STAMP)
	$(BIN)/python benchmarks/distill_budget.py --root runs/matrix --out benchmarks/results/distill-budget

# The default threshold of `ddm diagnose` (flag rate on clean data, precision/recall on 10 % flipped labels).
bench-diagnosis: $(STAMP)
	# the Benjamini-Hochberg cut (0.25): the first rule's runs (the fitted DDMs below), then the fresh test of q = 0.2
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets digits-convnet-d2,fmnist-convnet \
	  --fdr --out benchmarks/results/diagnosis-fdr
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets fmnist-mlp,digits-mlp \
	  --seeds 0,1,2,3 --fdr --out benchmarks/results/diagnosis-fdr-mlp
	PY=$(BIN)/python bash benchmarks/results/probes-028/fdr-fresh.sh
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/p28/diagnosis --datasets digits-resnet-K40,fmnist-convnet-K200-adam \
	  --select-seed 7 --seeds 7,8 --fdr --out benchmarks/results/probes-028/fdr-probes
	$(BIN)/python benchmarks/diagnosis_together.py runs/diagnosis-d2/digits-mlp/seed0/clean \
	  runs/diagnosis-d2/fmnist-mlp/seed0/clean runs/u12 runs/demo runs/probe22/fm-mlp3-K200 \
	  --out benchmarks/results/diagnosis-together-fdr
	# the score with a standard error (0.22): chosen on depth-2 digits and Fashion-MNIST, beside the robust z-score
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets digits-convnet-d2,fmnist-convnet \
	  --out benchmarks/results/diagnosis-score-error
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets digits-convnet-d2,fmnist-convnet \
	  --score robust-z --out benchmarks/results/diagnosis-score-robust-z
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets digits-convnet \
	  --out benchmarks/results/diagnosis-score-error-depth3
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets digits-convnet \
	  --score robust-z --out benchmarks/results/diagnosis-score-robust-z-depth3
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets fmnist-mlp,digits-mlp \
	  --out benchmarks/results/diagnosis-score-error-mlp
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-d2 --datasets fmnist-mlp,digits-mlp \
	  --score robust-z --out benchmarks/results/diagnosis-score-robust-z-mlp
	$(BIN)/python benchmarks/diagnosis_logo.py runs/diagnosis-d2/digits-mlp/seed0/clean \
	  runs/diagnosis-d2/fmnist-mlp/seed0/clean --peers if-explicit --out benchmarks/results/diagnosis-score-logo-mlp
	# before 0.22 (the robust z-score)
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-cb --score robust-z \
	  --out benchmarks/results/diagnosis-threshold-class-balance
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis --other-class-scale 1 --score robust-z \
	  --out benchmarks/results/diagnosis-threshold-no-balance
	$(BIN)/python benchmarks/diagnosis_threshold.py --root runs/diagnosis-scales --other-class-scale 0.5,0.3,0.2,0.1 \
	  --score robust-z --out benchmarks/results/diagnosis-threshold-balance
	# three probes' every group removed alone (BENCHMARKS.md, "Four more probes" and "Asked again after 0.19")
	$(BIN)/ddm run -q -w runs/u11 --preset demo --set model.depth=3 --set train.lr=0.02 --set train.momentum=0.9 --set train.save_every=5 \
	  --set cluster.per_class=5 --set model.seed=41 --set train.seed=41
	$(BIN)/ddm run -q -w runs/u12 --preset demo --dataset fashion-mnist --set data.train_size=4000 \
	  --set data.test_size=1000 --set model.name=mlp --set model.width=256 --set model.depth=1 \
	  --set train.optimizer=adamw --set train.lr=0.002 --set train.weight_decay=0.05 --set train.batch_size=128 \
	  --set train.epochs=15 --set cluster.per_class=6 --set model.seed=43 --set train.seed=43
	$(BIN)/ddm run -q -w runs/u14 --preset demo --dataset fashion-mnist --set data.train_size=3000 \
	  --set data.test_size=1000 --set model.width=16 --set model.norm=none --set train.lr=0.05 --set train.epochs=15 \
	  --set cluster.per_class=3 --set model.seed=53 --set train.seed=53
	$(BIN)/python benchmarks/diagnosis_logo.py runs/u11 runs/u12 --peers if-explicit \
	  --out benchmarks/results/diagnosis-score-logo-a
	$(BIN)/python benchmarks/diagnosis_logo.py runs/u14 --peers if-explicit --out benchmarks/results/diagnosis-score-logo-b
	# the flags removed together (needs make demo's runs/demo)
	$(BIN)/ddm run -q -w runs/probe22/fm-mlp3-K200 --preset demo --dataset fashion-mnist --set data.train_size=5000 \
	  --set data.test_size=1000 --set model.name=mlp --set model.width=256 --set model.depth=3 --set train.lr=0.01 \
	  --set train.momentum=0.9 --set train.schedule=cosine --set train.epochs=8 --set train.batch_size=64 \
	  --set cluster.per_class=20 --set model.seed=221 --set train.seed=221
	$(BIN)/python benchmarks/diagnosis_together.py runs/diagnosis-d2/digits-mlp/seed0/clean \
	  runs/diagnosis-d2/fmnist-mlp/seed0/clean runs/u12 runs/demo runs/probe22/fm-mlp3-K200 \
	  --out benchmarks/results/diagnosis-together

bench-digits: $(STAMP)
	$(BIN)/ddm evaluate -w runs/bench-digits --preset demo $(EVAL) --logo --peers all --diagnose
	mkdir -p benchmarks/results && cp runs/bench-digits/evaluation.md benchmarks/results/digits.md && \
	  cp runs/bench-digits/evaluation.json benchmarks/results/digits.json && mkdir -p benchmarks/results/digits-plots && cp runs/bench-digits/plots/* benchmarks/results/digits-plots/

# Fashion-MNIST: the diagnosis (Table 3, label noise) on seed 0 only (about 1.5 h of retrains and peers per seed
# here), then every peer on seeds 0-2. The second call reuses the first one's cached stages and retrains.
bench-fmnist: $(STAMP)
	$(BIN)/ddm evaluate -w runs/bench-fmnist --preset demo $(FMNIST) $(EVAL) --seeds 0 --diagnose
	mkdir -p benchmarks/results && cp runs/bench-fmnist/evaluation.md benchmarks/results/fashion-mnist-diagnosis.md && \
	  cp runs/bench-fmnist/evaluation.json benchmarks/results/fashion-mnist-diagnosis.json
	$(BIN)/ddm evaluate -w runs/bench-fmnist --preset demo $(FMNIST) $(EVAL) --peers all
	cp runs/bench-fmnist/evaluation.md benchmarks/results/fashion-mnist.md && \
	  cp runs/bench-fmnist/evaluation.json benchmarks/results/fashion-mnist.json && \
	  mkdir -p benchmarks/results/fashion-mnist-plots && cp runs/bench-fmnist/plots/* benchmarks/results/fashion-mnist-plots/

# DDM design variants (issue 5), each scored on the retrains the protocol cached, with its fine-tune rate
# chosen per seed on validation targets and subsets. The default variant is selected on digits seed 3
# (its own trajectory, groups, retrains and validation targets); seeds 0-2 are only reported.
ABLATION := paper,reverse-free,local-hard,local-soft,local-free,local-free-linear,local-free-noise,local-free-ipc5-linear,first-order
ABL      := -q --num-targets 20 --lds-subsets 50
bench-ablation: bench-digits bench-fmnist
	$(BIN)/ddm evaluate -w runs/bench-select --preset demo $(ABL) --seeds 3 --tune 0.01,0.03,0.1,0.3,1 \
	  --ablation paper,reverse-free,local-hard,local-soft,local-free,local-free-ipc5,local-free-linear,local-free-noise,local-free-ipc5-linear,first-order
	$(BIN)/ddm evaluate -w runs/bench-digits --preset demo $(ABL) --seeds 0,1,2 --tune 0.01,0.03,0.1,0.3,1 \
	  --peers tracin,if-explicit --ablation $(ABLATION)
	$(BIN)/ddm evaluate -w runs/bench-fmnist --preset demo $(FMNIST) $(ABL) --seeds 0,1,2 --tune 0.01,0.03,0.1,0.3 \
	  --peers tracin,trak --ablation paper,local-free,local-free-linear,local-free-noise,local-free-ipc5-linear,first-order
	mkdir -p benchmarks/results && cp runs/bench-select/ablation.md benchmarks/results/ablation-select-digits.md && \
	  cp runs/bench-select/ablation.json benchmarks/results/ablation-select-digits.json && \
	  for d in digits fmnist; do cp runs/bench-$$d/ablation.md benchmarks/results/ablation-$$d.md && \
	    cp runs/bench-$$d/ablation.json benchmarks/results/ablation-$$d.json; done

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean:
	rm -rf runs/demo
