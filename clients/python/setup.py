"""Builds daybook-client: the gRPC stubs are generated from daybook's `proto/` at build
time (into the `daybook.v1` package of the wheel), so the client always matches the
proto it was built from."""

import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).parent.resolve()


def proto_root() -> pathlib.Path:
    # Inside the daybook repository (pip install ./clients/python), or an sdist that
    # carries a copy of proto/.
    for candidate in (HERE / "proto", HERE.parent.parent / "proto"):
        if (candidate / "daybook" / "v1").is_dir():
            return candidate
    raise SystemExit("daybook-client: daybook's proto/ directory was not found")


class BuildWithStubs(build_py):
    def run(self):
        import grpc_tools
        from grpc_tools import protoc

        root = proto_root()
        out = pathlib.Path(self.build_lib)
        out.mkdir(parents=True, exist_ok=True)
        protos = sorted(str(p) for p in (root / "daybook" / "v1").glob("*.proto"))
        well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("daybook-client: generating the stubs failed")
        for package in (out / "daybook", out / "daybook" / "v1"):
            (package / "__init__.py").touch()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
