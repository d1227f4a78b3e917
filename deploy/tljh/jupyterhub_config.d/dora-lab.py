"""The DoRA Lab's settings for each user's server on The Littlest JupyterHub (docs/deploying.md).

Installed as /opt/tljh/config/jupyterhub_config.d/dora-lab.py: TLJH loads it after its own settings (then
`sudo tljh-config reload`). `make test-hub` loads this same file into its hub.
"""

c = get_config()  # noqa: F821 (JupyterHub provides get_config when it loads this file)
c.Spawner.environment.update(
    {
        "LAB_DATA_DIR": "/srv/data/sst2",  # SST-2, one read-only copy for everyone
        # Each user's results and figures in their own home, outside the assignment folder (whose contents are
        # submitted). The lab expands ~ itself: TLJH's accounts are jupyter-<name>, so no lookup by the hub's name.
        "LAB_OUTPUT_DIR": "~/dora-lab-outputs",
        "HF_HUB_OFFLINE": "1",  # the model ships in a package: nothing to download
        "OMP_NUM_THREADS": "2",  # = limits.cpu: PyTorch would otherwise start one thread per core of the server
    }
)
