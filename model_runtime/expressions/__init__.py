"""ARKit-52 expression curves from a reconstruction: the basis (bench/expression_basis.py), the solver
(solver.py), the curves file (reconstruction_format.py) and the Live Link Face CSV (livelink.py)."""
