"""Build the models of every sample entry script (or of the ones named).

    python entry_scripts/make_models.py                    # all samples
    python entry_scripts/make_models.py onnx_model         # just one
    python entry_scripts/make_models.py --out /tmp/models  # into /tmp/models/<sample>/azureml-models/...

Each sample's make_model.py writes its files under entry_scripts/<sample>/azureml-models/, the layout
Azure ML mounts in the container (azureml-models/<model>/<version>/<file>). Deterministic (the same bytes
every time; files already up to date are not rewritten), offline (only data sets bundled with
scikit-learn), a few seconds in all.
"""

import argparse
import os
import runpy

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = ["sklearn_json", "numpy_schema", "rawhttp_image", "multi_model", "onnx_model"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="*", metavar="SAMPLE",
                        help=f"which samples (default: all of {', '.join(SAMPLES)})")
    parser.add_argument("--out", help="write into OUT/<sample>/ instead of entry_scripts/<sample>/")
    args = parser.parse_args(argv)
    unknown = [name for name in args.samples if name not in SAMPLES]
    if unknown:
        parser.error(f"unknown sample(s) {', '.join(unknown)}; choose from {', '.join(SAMPLES)}")
    for name in args.samples or SAMPLES:
        print(f"[{name}]")
        make_model = runpy.run_path(os.path.join(HERE, name, "make_model.py"))["main"]
        if args.out:
            make_model(out_root=os.path.join(os.path.abspath(args.out), name))
        else:
            make_model()


if __name__ == "__main__":
    main()
