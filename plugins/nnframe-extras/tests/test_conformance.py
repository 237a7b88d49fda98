from nnframe.testing import conformance_test

test_conformance = conformance_test("nnframe-extras")
