"""Running a trained UPS model on new data: ``python infer.py --task NAME --model DIR --input FILE``.

- :mod:`.inputs`: the user's data as schema samples: any converter format, a prepared dataset, or plain keypoint
  arrays (``.npy`` / ``.npz`` / ``.json``), one file, several, or a folder;
- :mod:`.recipe`: what a saved model needs besides its weights to read new data as training did (the task spec
  stored in the model, the deterministic transforms and label set of the run's ``config.yaml``, the layouts it
  was trained on);
- :mod:`.examples`: encoder inputs built by the training code itself (:class:`~ups_toolkit.data.task_examples.
  TaskExamples` at evaluation settings), after mapping the input to the model's layout;
- :mod:`.runner`: batched, cached decoding per task and the results (labels, 3D poses, future frames, segments,
  neighbours);
- :mod:`.report`: JSON / NPZ files and the terminal summary; :mod:`.figures`: the pictures of ``--visualize``;
- :mod:`.cli`: the command line (``infer.py`` is a thin wrapper).

Importing this package imports neither torch nor transformers: ``infer.py --help`` and argument errors answer at once.
"""
