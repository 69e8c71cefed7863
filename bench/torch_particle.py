#!/usr/bin/python3
"""PyTorch peer of ember's particle recipe: train (Method A, InfoNCE) and evaluate closed loop.

Lets ember's success rates on the N-D particle task be compared with an independent PyTorch
implementation distribution against distribution: the same training seeds (as labels: the random
streams differ) and the same evaluation episodes (read from a file that `ember data particle`
wrote). The model, fit_stats, the training step and DFO are python/ember_torch's (docs/torch.md),
imported, not copied; bench/torch_reference.py explains the thread settings (OpenBLAS's own
pool, passive OpenMP waits), which --threads applies the same way (ember_torch.set_threads).

train   --data DEMOS.csv --y-dim N --out MODEL.safetensors --seed S
        [--arch resnet --width 128 --depth 2 --batch 256 --negatives 64 --steps 8000 --lr 1e-3
         --lr-decay 0.99 --decay-steps 100 --temperature 1 --bound-margin 0.05 --ema 0 --threads 2]
  ember's Method A (lib/src/train.c, ember/train.h):
  - DEMOS.csv as `ember data particle` writes it (header x0..,y:y0..; the last N columns are y).
  - x and y normalised and the sampling bounds fitted as ember does (ember_torch.fit_stats:
    per column zero mean / unit population std, the normalised y's min/max widened by
    bound-margin x the range per side).
  - Network: ember_torch's EmberModel (pre-activation ResNet MLP, late fusion, ember's tensor
    names); weights and biases start U(-1/sqrt(fan_in), 1/sqrt(fan_in)), nn.Linear's default and
    ember_net_init_params' distribution. Same distribution, different values (torch's RNG).
  - Each step (ember_torch.Trainer): `batch` rows drawn uniformly with replacement; each true y
    (index 0) with `negatives` counter-examples uniform in the bounds; loss = cross-entropy of
    softmax(-E/T) against index 0, mean over the batch; Adam(0.9, 0.999, eps 1e-8) at lr x
    lr_decay^(t / decay_steps), t = steps taken (continuous decay, as ember); --ema D > 0: the
    weights' moving average, d = min(D, (1 + t) / (10 + t)), and the saved model is the average.
  - Progress on stderr every 10% of the steps (loss of the step, mean loss over the last 100
    steps, lr, steps/s); at the end, on stdout, the wall time, steps/s and final mean loss.
  - MODEL.safetensors: an ember checkpoint (ember_torch.save_ember), which `ember eval particle`
    and emberd take as well.

eval    --model MODEL --dims N --starts STARTS.csv [--episodes 100 --samples 1024 --iters 3
         --sigma 0.33 --shrink 0.5 --temperature 1 --seed 1000 --threads 2 --trace FILE --quiet]
eval    --policy oracle|random --dims N --starts STARTS.csv [...]
  The particle task, written here from docs/particle.md's rules (not from ember's code): state in
  float64; a control step clips the action to [0, 1] (NaN -> 0) and holds it for 10 sub-steps
  of dt 0.005 under u = 10 (a - p) - 5 v, p <- p + v dt, v <- v + u dt (both from the old p, v);
  50 control steps; after each, the distances to both goals are taken. Success: closest
  approach to goal 1 < 0.05, to goal 2 < 0.05, and final distance to goal 2 < 0.05. The policy
  sees (position, velocity, goal 1, goal 2) as float32 (H such observations, oldest first, the
  first tiled at the start, when the model takes 4N H x: ember's --history).
  Episodes: episode e starts from row 50 e of STARTS.csv, made by
  `ember data particle --dims N --episodes E --seed 1000 --out STARTS.csv`: its first 4N x are
  the position, velocity (0), goal 1 and goal 2, so these are the episodes that
  `ember eval particle --seed 1000` plays.
  All episodes advance in lock step, one batched ember_torch.dfo_batched call per control
  step (IBC's DFO: uniform start in the bounds, softmax(-E/T) resampling with replacement,
  N(0, sigma^2) noise in normalised y units shrunk by `shrink` per iteration, clipped to the
  bounds, final pick = highest probability), then y is denormalised. Inference draws from torch's
  RNG seeded with --seed.
  MODEL: an ember checkpoint (method dfo) from `train` or from `ember train`, read with
  ember_torch.load_ember, so that the same weights can be evaluated by both evaluators.
  --policy oracle: goal 1 until within 0.01 of it (checked before acting), then goal 2;
  --policy random: uniform actions in [0, 1]^N.
  Prints success with a 95% Wilson interval, the goal 1 / goal 2 hit rates, actions/s (inference
  time only), then a CSV header and one line with `ember eval particle --csv`'s columns
  (dims,episodes,policy,method,where,seed,success,successes,ci_lo,ci_hi,goal1_hit,goal2_hit,
  actions_per_s,inference_s,total_s), where = "torch" and seed = --seed (the inference seed;
  the episodes are STARTS.csv's). --trace FILE writes ember's --trace layout
  (episode,success,min_dist_goal1,min_dist_goal2,final_dist_goal2).

seeds   --data DEMOS.csv --dims N --starts STARTS.csv --seeds 1,2,3 [--work DIR] [train flags]
        [eval flags]
  Trains and evaluates each seed in turn (models kept in --work if given, else in a temporary
  directory that is removed); training progress on stderr; one key=value line per seed, then
  the mean and the worst success, on stdout.

How it differs from ember (where it could matter):
  - Random streams: torch's global RNG (seeded with --seed) draws the initial weights, batches,
    counter-examples and DFO samples; ember uses its own counter-based streams. A seed number
    names a run in both but gives different draws, so compare distributions over seeds, not
    seed by seed.
  - The episodes start from STARTS.csv's float32 values where ember starts from the double
    draws they round: positions and goals differ by < 6e-8, so the distances agree to about
    1e-7 (a success decided within that of 0.05 could flip; none did in the checks).
  - No gradient clipping, no spectral normalisation, no Langevin/ardfo/mse: Method A with DFO
    inference only (and no sample-then-refine).
  - Speed is PyTorch's: slower than ember (docs/performance.md has ember's InfoNCE step
    against PyTorch's at the paper's network size).

Examples (ember's build in build/release/):
  build/release/ember data particle --dims 2 --episodes 2000 --seed 0 --out /tmp/p2.csv
  build/release/ember data particle --dims 2 --episodes 100 --seed 1000 --out /tmp/p2-starts.csv
  /usr/bin/python3 bench/torch_particle.py train --data /tmp/p2.csv --y-dim 2 --out /tmp/t2.safetensors \\
      --seed 1 --steps 8000 --threads 2
  /usr/bin/python3 bench/torch_particle.py eval --model /tmp/t2.safetensors --dims 2 --episodes 100 \\
      --starts /tmp/p2-starts.csv --samples 1024
  /usr/bin/python3 bench/torch_particle.py eval --policy oracle --dims 2 --episodes 20 \\
      --starts /tmp/p2-starts.csv --trace /tmp/oracle-torch.csv
  /usr/bin/python3 bench/torch_particle.py seeds --data /tmp/p2.csv --dims 2 \\
      --starts /tmp/p2-starts.csv --seeds 1,2,3 --steps 8000 --episodes 100
  # the same episodes in ember, for comparison:
  build/release/ember train --data /tmp/p2.csv --y-dim 2 --out /tmp/e2.safetensors --seed 1 \\
      --width 128 --depth 2 --batch 256 --negatives 64 --steps 8000
  build/release/ember eval particle --dims 2 --model /tmp/e2.safetensors --episodes 100 \\
      --seed 1000 --samples 1024 --csv
  /usr/bin/python3 bench/torch_particle.py eval --model /tmp/e2.safetensors --dims 2 \\
      --starts /tmp/p2-starts.csv        # ember's weights, this script's inference and task
"""
import argparse
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch: torch_reference.py says why
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ember_torch as et  # noqa: E402

# Flush denormal floats to zero: without it this recipe's training slows down as it goes (here,
# one thread: 8.7 steps/s over the first 300 steps, 3.5 over the first 600, about 1 later, nearly
# all of it inside OpenBLAS's sgemm kernel), with it 14.7 steps/s throughout and the same losses
# (docs/torch.md). ember's own training runs at a steady speed without it.
torch.set_flush_denormal(True)

STEPS = 50          # control steps per episode
SUBSTEPS = 10       # integration steps per control step
DT = 0.005
KP, KV = 10.0, 5.0
GOAL_DIST = 0.05    # success: within this of a goal
ORACLE_DIST = 0.01  # the oracle turns to goal 2 within this of goal 1
Z95 = 1.959963984540054


def die(msg):
    print(f"torch_particle: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- data and normalisation ----------------------------------------------------------------

def read_csv(path):
    """(header list, float32 array (rows, cols)); the values are %.9g floats, read exactly."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        a = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if a.shape[0] == 0 or a.shape[1] != len(header):
        die(f"{path}: expected rows of {len(header)} values under the header, got shape {a.shape}")
    return header, a.astype(np.float32)


def load_demos(path, y_dim):
    header, a = read_csv(path)
    if y_dim < 1 or y_dim >= a.shape[1]:
        die(f"{path}: --y-dim {y_dim} leaves no x column ({a.shape[1]} columns)")
    want = [f"y:y{j}" for j in range(y_dim)]  # y marked, as `ember train` reads it (y0.. before)
    if [h if h.startswith("y:") else "y:" + h for h in header[-y_dim:]] != want:
        die(f"{path}: the last {y_dim} columns should be {','.join(want)}, got {','.join(header[-y_dim:])}")
    if not np.isfinite(a).all():
        die(f"{path}: non-finite values")
    return np.ascontiguousarray(a[:, :-y_dim]), np.ascontiguousarray(a[:, -y_dim:])


# ---- training ------------------------------------------------------------------------------

def train(args, log=sys.stdout):
    """Trains one model as ember's Method A; saves it to args.out. Returns a summary dict."""
    x, y = load_demos(args.data, args.y_dim)
    n, x_dim, y_dim = x.shape[0], x.shape[1], y.shape[1]
    et.set_threads(args.threads)
    o = et.recipe("dfo", arch=args.arch, width=args.width, depth=args.depth, batch=args.batch,
                  negatives=args.negatives, steps=args.steps, lr=args.lr, lr_decay=args.lr_decay,
                  decay_steps=args.decay_steps, temperature=args.temperature,
                  bound_margin=args.bound_margin, ema=args.ema)
    torch.manual_seed(args.seed)
    model = et.EmberModel("dfo", x_dim, y_dim, args.arch, args.width, args.depth)
    model.set_stats(et.fit_stats(x, y, "dfo", args.bound_margin))
    trainer = et.Trainer(model, x, y, o, seed=args.seed)
    print(f"torch_particle train: {n} rows (x {x_dim}, y {y_dim}) from {args.data}; {args.arch} "
          f"{args.width}x{args.depth}, {args.steps} steps, batch {args.batch}, {args.negatives} "
          f"negatives, lr {args.lr:g} x{args.lr_decay:g}/{args.decay_steps}, ema {args.ema:g}, "
          f"seed {args.seed}, {args.threads} thread(s)", file=sys.stderr, flush=True)
    marks = {max(1, math.ceil(k * args.steps / 10)) for k in range(1, 11)}
    t0 = time.perf_counter()
    for s in range(args.steps):
        lr = trainer.lr()
        try:
            loss = trainer.step()
        except FloatingPointError as e:
            die(str(e))
        if s + 1 in marks:
            el = time.perf_counter() - t0
            w = trainer.window
            print(f"step {s + 1}/{args.steps} loss {loss:.4f} avg {sum(w) / len(w):.4f} "
                  f"lr {lr:.6g} {(s + 1) / el:.1f} steps/s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    final = sum(trainer.window) / len(trainer.window)
    trainer.finish()
    model.options["infer.samples"] = 1024
    et.save_ember(model, args.out)
    print(f"torch_particle train: {args.steps} steps in {wall:.1f} s ({args.steps / wall:.2f} "
          f"steps/s), final loss {final:.4f} (mean of the last {len(trainer.window)}); wrote {args.out}",
          file=log, flush=True)
    return {"train_s": wall, "steps_per_s": args.steps / wall, "loss": final}


# ---- models --------------------------------------------------------------------------------

def load_model(path):
    """An ember_torch EmberModel from an ember dfo checkpoint (torch_particle's or ember's)."""
    try:
        model = et.load_ember(path)
    except (OSError, ValueError) as e:
        die(str(e))
    if model.method != "dfo":
        die(f"{path}: method {model.method}: only dfo models are evaluated here")
    return model


# ---- the particle task ---------------------------------------------------------------------

def read_starts(path, dims, episodes):
    """The first observation of each of `episodes` episodes: row 50 e of STARTS.csv. Returns
    float32 (episodes, 4 dims): position, velocity, goal 1, goal 2."""
    header, a = read_csv(path)
    n4 = 4 * dims
    nx = sum(1 for h in header if h.startswith("x"))
    if nx % n4 or len(header) != nx + dims:
        die(f"{path}: {nx} x and {len(header) - nx} y columns do not fit the {dims}-D particle "
            f"task (4N H x, N y); make it with ember data particle --dims {dims}")
    if a.shape[0] % STEPS or a.shape[0] // STEPS < episodes:
        die(f"{path}: {a.shape[0]} rows hold {a.shape[0] // STEPS} episodes of {STEPS} steps; "
            f"{episodes} asked for")
    s = a[0:STEPS * episodes:STEPS, :n4]
    if np.any(s[:, dims:2 * dims] != 0):
        die(f"{path}: row 50 e does not start an episode (velocity is not 0)")
    return s


def wilson(k, n):
    p = k / n
    den = 1 + Z95 * Z95 / n
    mid = (p + Z95 * Z95 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def run_episodes(starts, dims, history, act, quiet=True):
    """Plays every episode in lock step. act(obs float32 (E, 4N H), t, state) -> float32 (E, N).
    Returns (min1, min2, final2) float64 (E,) each."""
    n = dims
    pos = starts[:, :n].astype(np.float64)
    vel = starts[:, n:2 * n].astype(np.float64)
    g1 = starts[:, 2 * n:3 * n].astype(np.float64)
    g2 = starts[:, 3 * n:4 * n].astype(np.float64)
    e = starts.shape[0]
    min1 = np.full(e, np.inf)
    min2 = np.full(e, np.inf)
    state = {"pos": pos, "g1": g1, "g2": g2, "phase": np.zeros(e, dtype=bool)}
    hist = None
    t_start = last = time.perf_counter()
    for t in range(STEPS):
        obs = np.concatenate([pos, vel, g1, g2], axis=1).astype(np.float32)
        hist = np.tile(obs, (1, history)) if t == 0 else np.concatenate([hist[:, 4 * n:], obs], axis=1)
        state["pos"] = pos
        a32 = np.asarray(act(np.ascontiguousarray(hist), t, state), dtype=np.float32)
        a = np.clip(a32.astype(np.float64), 0.0, 1.0)
        a[np.isnan(a32)] = 0.0
        for _ in range(SUBSTEPS):
            u = KP * (a - pos) - KV * vel
            pos, vel = pos + vel * DT, vel + u * DT
        min1 = np.minimum(min1, np.sqrt(((pos - g1) ** 2).sum(axis=1)))
        min2 = np.minimum(min2, np.sqrt(((pos - g2) ** 2).sum(axis=1)))
        now = time.perf_counter()
        if not quiet and now - last > 5.0:
            last = now
            print(f"torch_particle eval: step {t + 1} of {STEPS}, {now - t_start:.0f} s",
                  file=sys.stderr, flush=True)
    return min1, min2, np.sqrt(((pos - g2) ** 2).sum(axis=1))


def oracle(obs, t, state):
    """Goal 1 until within ORACLE_DIST of it (from the current state), then goal 2."""
    d1 = np.sqrt(((state["pos"] - state["g1"]) ** 2).sum(axis=1))
    state["phase"] |= d1 < ORACLE_DIST
    return np.where(state["phase"][:, None], state["g2"], state["g1"]).astype(np.float32)


def evaluate(args, out=sys.stdout):
    """Runs args.episodes episodes; prints the report and the CSV lines. Returns a result dict."""
    et.set_threads(args.threads)
    torch.manual_seed(args.seed)
    dims = args.dims
    infer_s = [0.0]
    history = 1
    if args.model:
        model = load_model(args.model)
        if model.y_dim != dims or model.x_dim % (4 * dims):
            die(f"{args.model} takes {model.x_dim} x and gives {model.y_dim} y; the {dims}-D "
                f"particle task needs 4N H x and N y")
        history = model.x_dim // (4 * dims)

        def act(obs, t, state):
            t0 = time.perf_counter()
            with torch.inference_mode():
                yn = et.dfo_batched(model.net(), model.norm_x(torch.from_numpy(obs)), model.y_lo,
                                    model.y_hi, args.samples, args.iters, args.sigma, args.shrink,
                                    args.temperature)
                y = model.denorm_y(yn)
            infer_s[0] += time.perf_counter() - t0
            return y.numpy()
        policy, method = args.model, "dfo"
    elif args.policy == "oracle":
        act, policy, method = oracle, "oracle", "oracle"
    else:
        def act(obs, t, state):
            return torch.rand(obs.shape[0], dims).numpy()
        policy, method = "random", "random"

    starts = read_starts(args.starts, dims, args.episodes)
    t0 = time.perf_counter()
    min1, min2, final2 = run_episodes(starts, dims, history, act, args.quiet)
    total = time.perf_counter() - t0
    ok = (min1 < GOAL_DIST) & (min2 < GOAL_DIST) & (final2 < GOAL_DIST)
    k, e = int(ok.sum()), args.episodes
    lo, hi = wilson(k, e)
    h1, h2 = float((min1 < GOAL_DIST).mean()), float((min2 < GOAL_DIST).mean())
    actions = e * STEPS
    aps = actions / infer_s[0] if infer_s[0] > 0 else 0.0
    if args.trace:
        with open(args.trace, "w") as f:
            f.write("episode,success,min_dist_goal1,min_dist_goal2,final_dist_goal2\n")
            for i in range(e):
                f.write(f"{i},{int(ok[i])},{min1[i]:.6g},{min2[i]:.6g},{final2[i]:.6g}\n")
    print(f"particle     N = {dims}, {e} episodes of {STEPS} steps, starts {args.starts}", file=out)
    if args.model:
        print(f"policy       {policy} (dfo, torch), {args.samples} samples x {args.iters} iters, "
              f"{args.threads} thread(s), inference seed {args.seed}", file=out)
    else:
        print(f"policy       {policy} (torch)", file=out)
    print(f"success      {100 * k / e:.1f}% ({k} of {e}), 95% interval {100 * lo:.1f}-{100 * hi:.1f}% "
          f"(Wilson)", file=out)
    print(f"goals        goal 1 reached in {100 * h1:.1f}%, goal 2 in {100 * h2:.1f}% (closest "
          f"approach < {GOAL_DIST:g})", file=out)
    if args.model:
        print(f"speed        {aps:.0f} actions/s ({actions} actions, {infer_s[0]:.2f} s of inference, "
              f"{1e3 * infer_s[0] / actions:.3f} ms each)", file=out)
    print("dims,episodes,policy,method,where,seed,success,successes,ci_lo,ci_hi,goal1_hit,"
          "goal2_hit,actions_per_s,inference_s,total_s", file=out)
    print(f"{dims},{e},{policy},{method},torch,{args.seed},{k / e:.4f},{k},{lo:.4f},{hi:.4f},"
          f"{h1:.4f},{h2:.4f},{aps:.1f},{infer_s[0]:.3f},{total:.3f}", file=out, flush=True)
    return {"success": k / e, "successes": k, "episodes": e, "ci_lo": lo, "ci_hi": hi,
            "goal1_hit": h1, "goal2_hit": h2, "actions_per_s": aps}


# ---- seeds ---------------------------------------------------------------------------------

def seeds(args):
    work = args.work or tempfile.mkdtemp(prefix="torch_particle.")
    os.makedirs(work, exist_ok=True)
    args.y_dim, args.policy = args.dims, None
    rows = []
    try:
        for s in args.seeds:
            args.seed = s
            args.out = args.model = os.path.join(work, f"torch-particle-{args.dims}-s{s}.safetensors")
            tr = train(args, log=sys.stderr)
            ev_args = argparse.Namespace(**{**vars(args), "seed": args.eval_seed, "trace": None})
            with open(os.devnull, "w") as null:
                ev = evaluate(ev_args, out=null)
            rows.append((s, ev))
            print(f"seed={s} success={ev['success']:.4f} successes={ev['successes']} "
                  f"episodes={ev['episodes']} ci_lo={ev['ci_lo']:.4f} ci_hi={ev['ci_hi']:.4f} "
                  f"goal1_hit={ev['goal1_hit']:.4f} goal2_hit={ev['goal2_hit']:.4f} "
                  f"train_s={tr['train_s']:.1f} steps_per_s={tr['steps_per_s']:.2f} "
                  f"loss={tr['loss']:.4f} actions_per_s={ev['actions_per_s']:.1f}", flush=True)
    finally:
        if not args.work:
            for f in os.listdir(work):
                os.remove(os.path.join(work, f))
            os.rmdir(work)
    succ = [ev["success"] for _, ev in rows]
    worst = min(rows, key=lambda r: r[1]["success"])
    sd = float(np.std(succ, ddof=1)) if len(succ) > 1 else 0.0
    print(f"mean success={np.mean(succ):.4f} (sd {sd:.4f}) over {len(succ)} seeds "
          f"[{' '.join(f'{v:.2f}' for v in succ)}]; worst={worst[1]['success']:.4f} (seed {worst[0]})",
          flush=True)


# ---- command line --------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def train_flags(s):
        s.add_argument("--data", required=True, help="demonstrations CSV (ember data particle)")
        s.add_argument("--arch", choices=["resnet", "mlp"], default="resnet")
        s.add_argument("--width", type=int, default=128)
        s.add_argument("--depth", type=int, default=2)
        s.add_argument("--batch", type=int, default=256)
        s.add_argument("--negatives", type=int, default=64)
        s.add_argument("--steps", type=int, default=8000)
        s.add_argument("--lr", type=float, default=1e-3)
        s.add_argument("--lr-decay", type=float, default=0.99)
        s.add_argument("--decay-steps", type=int, default=100)
        s.add_argument("--temperature", type=float, default=1.0, help="InfoNCE (and DFO) temperature")
        s.add_argument("--bound-margin", type=float, default=0.05)
        s.add_argument("--ema", type=float, default=0.0, help="weight average decay (0 = off)")

    def eval_flags(s):
        s.add_argument("--dims", type=int, required=True, help="N")
        s.add_argument("--starts", required=True, help="ember data particle --seed 1000 output")
        s.add_argument("--episodes", type=int, default=100)
        s.add_argument("--samples", type=int, default=1024)
        s.add_argument("--iters", type=int, default=3)
        s.add_argument("--sigma", type=float, default=0.33)
        s.add_argument("--shrink", type=float, default=0.5)
        s.add_argument("--quiet", action="store_true", help="no progress on stderr")

    s = sub.add_parser("train", help="train one model (Method A)")
    train_flags(s)
    s.add_argument("--y-dim", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=2)

    s = sub.add_parser("eval", help="closed-loop episodes on the particle task")
    eval_flags(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="an ember dfo checkpoint (from train or ember train)")
    g.add_argument("--policy", choices=["oracle", "random"])
    s.add_argument("--temperature", type=float, default=1.0, help="DFO softmax temperature")
    s.add_argument("--seed", type=int, default=1000, help="inference (torch RNG) seed")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--trace", help="one CSV row per episode, as ember eval particle --trace")

    s = sub.add_parser("seeds", help="train and evaluate several seeds")
    train_flags(s)
    eval_flags(s)
    s.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], required=True)
    s.add_argument("--eval-seed", type=int, default=1000, help="inference (torch RNG) seed")
    s.add_argument("--work", help="keep the models in this directory")
    s.add_argument("--threads", type=int, default=2)

    args = p.parse_args(argv)
    for k in ("steps", "batch", "negatives", "width", "depth", "decay_steps", "episodes",
              "samples", "iters", "dims", "y_dim", "threads"):
        if getattr(args, k, 1) is not None and getattr(args, k, 1) < 1:
            die(f"--{k.replace('_', '-')} must be >= 1")
    if args.cmd == "train":
        train(args)
    elif args.cmd == "eval":
        evaluate(args)
    else:
        seeds(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
