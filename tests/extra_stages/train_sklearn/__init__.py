"""train_sklearn (tests only): a scikit-learn classifier behind the classifier role, through the shared protocol."""
