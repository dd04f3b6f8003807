"""Host reference for serial_eval: TensorFlow on the manifest's frozen graph, fed exactly the
pixels the board's KPU received (host.eval_inputs), scaled per the manifest's input scale.
TensorFlow side only: never import nncase here (the virtual board runs in its own process).
"""
from host import pixels
from host.manifest import check_frozen_pb
from host.pipeline import to_chw
from host.tf_infer import FrozenRunner, load_graph_def


def reference_outputs(manifest, images):
    """[[flat CHW float32 array per output] per image]."""
    fp = manifest["frozen_pb"]
    path = manifest.path_of("frozen_pb")
    check_frozen_pb(manifest)
    runner = FrozenRunner(load_graph_def(path), fp["input_node"], fp["output_nodes"])
    try:
        out = []
        for img in images:
            x = pixels.model_input(img.pixels, manifest["input"])
            res = runner.run(x[None])
            out.append([to_chw(r[0]) for r in res])
        return out
    finally:
        runner.close()
