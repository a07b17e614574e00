from tests.lab.fixtures import lab_factory, module_lab_factory  # noqa: F401
