#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora: fuzz/corpus/<target>/, a handful of small valid and
near-valid inputs each (libFuzzer mutates from these; docs/fuzzing.md).

    /usr/bin/python3 fuzz/make_corpus.py --ember build/release/ember

Needs python3-grpc-tools (protoc for the request messages, as the integration tests use) and
an ember CLI to train the checkpoints. Files a target found and that were kept as regressions
(crash-*, leak-*, ...) are left alone; every other file of a corpus directory is rewritten.
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
GRPC_PROTO = "/usr/share/grpc-proto/grpc"


def protos(tmp):
    """ember_pb2, health_pb2, reflection_pb2 (v1; v1alpha has the same wire format)."""
    hp = os.path.join(tmp, "hp")
    for src, dst in (("health/v1/health.proto", "healthv1/health.proto"),
                     ("reflection/v1/reflection.proto", "reflectionv1/reflection.proto")):
        os.makedirs(os.path.dirname(os.path.join(hp, dst)), exist_ok=True)
        shutil.copy(os.path.join(GRPC_PROTO, src), os.path.join(hp, dst))
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + os.path.join(SOURCE, "proto"),
                    "-I" + hp, "--python_out=" + out, "ember/v1/ember.proto",
                    "healthv1/health.proto", "reflectionv1/reflection.proto"], check=True)
    sys.path.insert(0, out)
    from ember.v1 import ember_pb2
    from healthv1 import health_pb2
    from reflectionv1 import reflection_pb2
    return ember_pb2, health_pb2, reflection_pb2


def reset(directory):
    """Empties a corpus directory except the regressions kept in it."""
    os.makedirs(directory, exist_ok=True)
    for f in os.listdir(directory):
        if not f.startswith(("crash-", "leak-", "timeout-", "oom-", "slow-unit-", "regress-")):
            os.unlink(os.path.join(directory, f))


def write(directory, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# ---- checkpoints -------------------------------------------------------------------------

def checkpoints(ember, d, tmp):
    csv = os.path.join(tmp, "train.csv")
    with open(csv, "w") as f:
        f.write("x,y1,y2\n")
        for i in range(16):
            f.write("%g,%g,%g\n" % (i / 8.0 - 1, (i % 4) / 2.0, -(i % 3) / 3.0))
    common = ["--data", csv, "--y-dim", "2", "--arch", "mlp", "--width", "4", "--depth", "1",
              "--steps", "2", "--batch", "4", "--negatives", "2", "--samples", "16",
              "--threads", "1", "--ema", "0", "--quiet"]
    runs = {"dfo": ["--method", "dfo"], "ardfo": ["--method", "ardfo"],
            "langevin": ["--method", "langevin", "--chain-steps", "2", "--schedule", "poly"],
            "mse": ["--method", "mse"],
            "dfo-sn": ["--method", "dfo", "--arch", "resnet", "--depth", "2", "--spectral-norm"]}
    for name, extra in runs.items():
        out = os.path.join(tmp, name + ".safetensors")
        subprocess.run([ember, "train"] + common + extra + ["--out", out], check=True)
        shutil.copy(out, os.path.join(d, name + ".safetensors"))
    # near-valid: the header alone, a length past the end, a JSON header that is not ember's
    with open(os.path.join(tmp, "dfo.safetensors"), "rb") as f:
        good = f.read()
    hlen = struct.unpack("<Q", good[:8])[0]
    write(d, "header-only.safetensors", good[:8 + hlen])
    write(d, "long-length.safetensors", struct.pack("<Q", len(good)) + good[8:])
    hdr = b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    write(d, "not-ember.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\0\0\x80\x3f")


# ---- datasets ----------------------------------------------------------------------------

def csvs(d):
    write(d, "header.csv", "x1,x2,y\n0.5,-1,2\n1.5,2e-3,-0.25\n3,4,5\n")
    write(d, "plain.csv", "1,2\n3,4\n5,6\n")
    write(d, "crlf-bom.csv", "\ufeffa , b\r\n 1 , 2 \r\n+3.5,-.5\r\n\r\n")
    write(d, "one-column.csv", "7\n8\n9\n")
    write(d, "wide.csv", "1,2,3,4,5\n6,7,8,9,10\n")
    write(d, "ragged.csv", "1,2,3\n4,5\n")
    write(d, "nan.csv", "x,y\n1,nan\n2,3\n")
    write(d, "mixed-header.csv", "x,1\n2,3\n")
    write(d, "marked.csv", "px,py,y:ax,y:ay\n0.1,0.2,1,2\n0.3,0.4,3,4\n")  # y by its marks
    write(d, "named.csv", ",b,y\n1,2,3\n4,5,6\n")  # --y-cols "y, b" names two of these


def npy(array_rows, dtype="<f4", fortran=False, shape=None):
    """A .npy v1.0 file of float rows (a list of lists, or a flat list for 1-D)."""
    flat = [v for row in array_rows for v in row] if array_rows and isinstance(array_rows[0], list) else list(array_rows)
    if shape is None:
        shape = (len(array_rows), len(array_rows[0])) if array_rows and isinstance(array_rows[0], list) else (len(flat),)
    if fortran and len(shape) == 2:
        flat = [array_rows[r][c] for c in range(shape[1]) for r in range(shape[0])]
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        dtype, "True" if fortran else "False", "(%d,)" % shape[0] if len(shape) == 1 else str(tuple(shape)))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    body = b"".join(struct.pack(dtype[0] + ("f" if dtype.endswith("4") else "d"), v) for v in flat)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + body


def npy_names(names, dtype="<U8"):
    """A 1-D .npy string array: '<U' (UTF-32LE code points) or '|S' (bytes), NUL-padded."""
    width = int(dtype[2:])
    codec = "utf-32-le" if dtype[1] == "U" else "utf-8"
    unit = 4 if dtype[1] == "U" else 1
    body = b"".join(n.encode(codec).ljust(width * unit, b"\0") for n in names)
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (dtype, len(names))
    header = header + " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + body


def npz(path, members, deflate=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)


def npzs(d):
    x = [[0.5, 1.0], [1.5, -2.0], [3.0, 0.25]]
    y = [[1.0], [2.0], [-1.0]]
    npz(os.path.join(d, "f4.npz"), [("x.npy", npy(x)), ("y.npy", npy(y))])
    npz(os.path.join(d, "f8-fortran.npz"), [("x.npy", npy(x, "<f8", fortran=True)),
                                            ("y.npy", npy([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "<f8"))])
    npz(os.path.join(d, "y-1d.npz"), [("x.npy", npy(x)), ("y.npy", npy([1.0, 2.0, 3.0]))])
    npz(os.path.join(d, "deflated.npz"), [("x.npy", npy(x)), ("y.npy", npy(y))], deflate=True)
    npz(os.path.join(d, "x-only.npz"), [("x.npy", npy(x))])
    npz(os.path.join(d, "rows-differ.npz"), [("x.npy", npy(x)), ("y.npy", npy([1.0, 2.0]))])
    npz(os.path.join(d, "two-x.npz"), [("x.npy", npy(x)), ("x", npy(x)), ("y.npy", npy(y))])
    npz(os.path.join(d, "names.npz"), [("x.npy", npy(x)), ("y.npy", npy(y)),
                                       ("x_names.npy", npy_names(["px", "F\u00e4rbung"])),
                                       ("y_names.npy", npy_names(["ax"], "|S2"))])


# ---- requests ----------------------------------------------------------------------------

def rpcs(d, pb):
    # first byte: Predict 0, Sample 1, GetModel 2, ListModels 3 (fuzz_rpc.c)
    def put(name, method, msg):
        write(d, name, bytes([method]) + msg.SerializeToString())
    put("predict-dfo", 0, pb.PredictRequest(model="dfo", x=[0.1, 0.2]))
    put("predict-dfo-v1-options", 0, pb.PredictRequest(
        model="dfo", version=1, x=[0.1, 0.2, -0.5, 0.4], row_offset=7,
        options=pb.InferenceOptions(samples=64, iterations=2, sigma=0.2, shrink=0.7, seed=3,
                                    temperature=0.5, refine_steps=5, refine_lr=0.1)))
    put("predict-langevin", 0, pb.PredictRequest(
        model="langevin", x=[0.3], options=pb.InferenceOptions(samples=8, langevin=pb.LangevinOptions(
            chain_steps=10, schedule=2, step_init=0.05, step_final=1e-4, gamma=0.5, noise_scale=0.5,
            delta_max=0.2, again_steps=3, again_step=1e-4))))
    put("predict-ardfo", 0, pb.PredictRequest(model="ardfo", x=[1, 2, 3, 4, 5, 6]))
    put("predict-mse", 0, pb.PredictRequest(model="mse", x=[1, 2, 3, 4]))
    put("predict-bad-x", 0, pb.PredictRequest(model="dfo", x=[0.1, 0.2, 0.3]))
    put("predict-rows", 0, pb.PredictRequest(model="dfo", x=[0.1, 0.2, 0.3, 0.4], rows=2))
    put("predict-rows-wrong", 0, pb.PredictRequest(model="dfo", x=[0.1, 0.2, 0.3, 0.4], rows=1))
    put("predict-nan", 0, pb.PredictRequest(model="dfo", x=[float("nan"), 0.2]))
    put("predict-unknown", 0, pb.PredictRequest(model="nope", x=[0.1]))
    put("sample-dfo", 1, pb.SampleRequest(model="dfo", x=[0.1, 0.2], modes=3, radius=0.1,
                                          min_mass=0.05, polish_steps=4, return_samples=True,
                                          options=pb.InferenceOptions(samples=32)))
    put("sample-langevin", 1, pb.SampleRequest(model="langevin", x=[0.5, 0.25], min_mass=-1))
    put("sample-mse", 1, pb.SampleRequest(model="mse", x=[1, 2, 3, 4]))
    put("sample-rows", 1, pb.SampleRequest(model="dfo", x=[0.1, 0.2], rows=1, modes=2))
    # the image model: 6x5x3 images, 1 extra (fuzz_server.c)
    shape = pb.ImageShape(height=6, width=5, channels=3)
    put("predict-image", 0, pb.PredictRequest(model="image", images=bytes(range(90)) * 2, image_shape=shape,
                                              x=[0.5, -0.5], rows=2))
    put("predict-image-no-shape", 0, pb.PredictRequest(model="image", images=bytes(90), x=[0.5]))
    put("predict-image-floats", 0, pb.PredictRequest(model="image", x=[0.1, 0.2, 0.3, 0.4, 0.5]))
    put("sample-image", 1, pb.SampleRequest(model="image", images=bytes(range(90)), image_shape=shape, x=[1.0],
                                            modes=2))
    put("getmodel-image", 2, pb.GetModelRequest(model="image"))
    put("getmodel-dfo-v3", 2, pb.GetModelRequest(model="dfo", version=3))
    put("getmodel-broken", 2, pb.GetModelRequest(model="broken"))
    put("getmodel-missing-version", 2, pb.GetModelRequest(model="ardfo", version=9))
    put("listmodels", 3, pb.ListModelsRequest())


def trains(d, pb):
    def put(name, msg):
        write(d, name, msg.SerializeToString())
    x = [0.1 * i for i in range(8)]
    y = [0.2 * i - 0.5 for i in range(8)]
    put("inline-dfo", pb.TrainRequest(model="m", x=x, y=y, x_dim=2, y_dim=2, steps=10, batch=4,
                                      negatives=4, arch="mlp", width=8, depth=1, lr=1e-2,
                                      lr_decay=0.9, decay_steps=5, temperature=0.5, bound_margin=0.1,
                                      seed=4, spectral_norm=True, samples=64, iterations=2,
                                      sigma=0.2, shrink=0.6, ema=0.9))
    put("inline-langevin", pb.TrainRequest(model="l", method="langevin", x=x, y=y[:4], x_dim=2,
                                           y_dim=1, chain_steps=3, schedule="poly", step_init=0.05,
                                           step_final=1e-4, gamma=0.5, noise_scale=0.5,
                                           delta_max=0.0, penalty_margin=2, penalty_weight=0.5))
    put("inline-ardfo", pb.TrainRequest(model="a", method="ardfo", x=x[:4], y=y, x_dim=1, y_dim=2,
                                        prefix_share=0.25, prefix_noise=0.1))
    put("inline-mse", pb.TrainRequest(model="e", method="mse", x=x, y=y, x_dim=4, y_dim=4))
    put("dataset-csv", pb.TrainRequest(model="d", dataset="d.csv", y_dim=1, steps=5))
    put("dataset-y-cols", pb.TrainRequest(model="d", dataset="d.csv", y_cols="y", steps=5))
    put("inline-names", pb.TrainRequest(model="n", x=x, y=y, x_dim=2, y_dim=2, x_names=["p", "q"],
                                        y_names=["a", "b"]))
    put("inline-names-bad", pb.TrainRequest(model="n", x=x, y=y, x_dim=2, y_dim=2, x_names=["p", "p"]))
    put("dataset-dir", pb.TrainRequest(model="d", dataset="sub"))
    put("dataset-outside", pb.TrainRequest(model="d", dataset="out/passwd"))
    put("dataset-dotdot", pb.TrainRequest(model="d", dataset="sub/../d.csv"))
    put("wrong-method-option", pb.TrainRequest(model="m", x=x, y=y, x_dim=2, y_dim=2, gamma=1))
    put("nan", pb.TrainRequest(model="m", x=[float("nan")] + x[1:], y=y, x_dim=2, y_dim=2))


def healths(d, hpb, rpb):
    # first byte: health Check 0, Watch 1, reflection v1 2, v1alpha 3 (fuzz_health.c)
    def put(name, method, msg):
        write(d, name, bytes([method]) + msg.SerializeToString())
    put("check-server", 0, hpb.HealthCheckRequest())
    put("check-ember", 0, hpb.HealthCheckRequest(service="ember.v1.Ember"))
    put("check-unknown", 0, hpb.HealthCheckRequest(service="other"))
    put("watch-ember", 1, hpb.HealthCheckRequest(service="ember.v1.Ember"))
    R = rpb.ServerReflectionRequest
    put("list-services", 2, R(host="h", list_services="*"))
    put("file-by-name", 2, R(file_by_filename="ember/v1/ember.proto"))
    put("symbol-method", 2, R(file_containing_symbol="ember.v1.Ember.Predict"))
    put("symbol-enum-value", 3, R(file_containing_symbol="ember.v1.LangevinOptions.SCHEDULE_IBC"))
    put("symbol-field", 3, R(file_containing_symbol="grpc.health.v1.HealthCheckRequest.service"))
    put("extension", 2, R(file_containing_extension=rpb.ExtensionRequest(
        containing_type="ember.v1.PredictRequest", extension_number=100)))
    put("extension-numbers", 3, R(all_extension_numbers_of_type="ember.v1.ModelInfo"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ember", required=True, help="the ember CLI, to train the checkpoints")
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pb, hpb, rpb = protos(tmp)
        for target, make in (("checkpoint", lambda d: checkpoints(os.path.abspath(args.ember), d, tmp)),
                             ("csv", csvs), ("npz", npzs), ("rpc", lambda d: rpcs(d, pb)),
                             ("train", lambda d: trains(d, pb)), ("health", lambda d: healths(d, hpb, rpb))):
            d = os.path.join(args.out, target)
            reset(d)
            make(d)
            files = os.listdir(d)
            print("%-10s %2d files, %6d bytes" % (target, len(files),
                                                  sum(os.path.getsize(os.path.join(d, f)) for f in files)))


if __name__ == "__main__":
    main()
