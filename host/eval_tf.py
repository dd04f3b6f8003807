"""Host reference for serial_eval: TensorFlow on the manifest's frozen graph, fed exactly the
pixels the board's KPU received (host.eval_inputs), scaled per the manifest's input scale.
TensorFlow side only: never import nncase here (the virtual board runs in its own process).
"""
from host import pixels
from host.manifest import check_frozen_pb
from host.pipeline import to_chw
from host.tf_infer import FrozenRunner, load_graph_def


class Reference(object):
    """`outputs(images)` -> [[flat CHW float32 array per output] per image]; one TensorFlow
    session for the whole run (`close()` ends it). Each image is its own session.run (frozen
    K210 graphs have batch 1), so an image's outputs never depend on its batch."""

    def __init__(self, manifest):
        check_frozen_pb(manifest)
        fp = manifest["frozen_pb"]
        self.input = manifest["input"]
        self.runner = FrozenRunner(load_graph_def(manifest.path_of("frozen_pb")),
                                   fp["input_node"], fp["output_nodes"])

    def outputs(self, images):
        out = []
        for img in images:
            x = pixels.model_input(img.pixels, self.input)
            out.append([to_chw(r[0]) for r in self.runner.run(x[None])])
        return out

    def close(self):
        self.runner.close()
