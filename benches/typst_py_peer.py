"""The peer `benches/render.rs` compares `folio run` with: a user's own script around
the same engine (typst-py, `pip install typst==0.15.0`). One warm `typst.Compiler`
per process, one process per core; each process writes `data.json` before each
compile and writes the PDF.

    python typst_py_peer.py TEMPLATE DATA_DIR OUT_DIR PROCESSES
"""
import os
import shutil
import sys
from multiprocessing import Process

import typst


def work(template, names, data_dir, out_dir, root):
    os.makedirs(root, exist_ok=True)
    shutil.copy(template, os.path.join(root, "main.typ"))
    compiler = typst.Compiler(os.path.join(root, "main.typ"), root=root)
    for name in names:
        shutil.copy(os.path.join(data_dir, name), os.path.join(root, "data.json"))
        pdf = compiler.compile(format="pdf")
        with open(os.path.join(out_dir, name.replace(".json", ".pdf")), "wb") as out:
            out.write(pdf)


if __name__ == "__main__":
    template, data_dir, out_dir, processes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(os.listdir(data_dir))
    workers = [
        Process(target=work, args=(template, names[i::processes], data_dir, out_dir, os.path.join(out_dir, f"root-{i}")))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            sys.exit(f"a worker failed with {worker.exitcode}")
