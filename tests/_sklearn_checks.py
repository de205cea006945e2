"""scikit-learn estimator checks shared by the test modules.

The learners that fit on tuples (pairs, triplets, quadruplets) cannot run
sklearn's generic checks that fit, which feed 2-D points; they run the
checks below, which never fit, and test the rest of the contract on tuple
data in their own modules.
"""
from sklearn.utils import estimator_checks as ec

NO_FIT_CHECKS = [
    ec.check_parameters_default_constructible,
    ec.check_no_attributes_set_in_init,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_estimator_cloneable,
    ec.check_estimator_repr,
    ec.check_mixin_order,
    ec.check_valid_tag_types,
    ec.check_estimator_tags_renamed,
    ec.check_do_not_raise_errors_in_init_or_set_params,
]
