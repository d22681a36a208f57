"""SlicerTSKD: a small, fast segmentation model from a few labelled cases (task-specific distillation)."""

import logging
import os
import sys
import tempfile
import time

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from SlicerTSKDLib.scripting import SlicerTSKDLogic  # noqa: F401  scripts: SlicerTSKD.SlicerTSKDLogic().segment(v, m)

DOCS_URL = "https://github.com/SlicerTSKD/SlicerTSKD#readme"


class SlicerTSKD(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TS-KD Segmentation")
        self.parent.categories = ["Segmentation"]
        self.parent.contributors = ["SlicerTSKD developers"]
        self.parent.helpText = _(
            "Label a few cases; SlicerTSKD fine-tunes a segmentation foundation model on them and distils it "
            "into a small, fast model that runs in Slicer. The training backend runs in its own Python "
            'environment, set up from this module. See the <a href="{url}">documentation</a>.'
        ).format(url=DOCS_URL)
        self.parent.acknowledgementText = _(
            "Based on task-specific knowledge distillation (arXiv:2503.06976), with Segment Anything / MedSAM, "
            "MONAI and PyTorch."
        )


class SlicerTSKDWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from SlicerTSKDLib.moduleWidget import ModuleWidget

        self.moduleWidget = ModuleWidget(self.layout, os.path.dirname(__file__))
        self.layout.addStretch(1)

    def enter(self):  # the module is shown / exit(): another one is (qSlicerScriptedLoadableModuleWidget.cxx l. 66-67)
        getattr(self, "moduleWidget", None) and self.moduleWidget.enter()

    def exit(self):
        getattr(self, "moduleWidget", None) and self.moduleWidget.exit()

    def cleanup(self):
        getattr(self, "moduleWidget", None) and self.moduleWidget.cleanup()


class SlicerTSKDTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (``Slicer --testing``). With SLICERTSKD_TEST_BACKEND_URL (and _TOKEN) set,
    it also trains on phantoms there and checks the student's Dice inside Slicer."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_environmentPlan()
        self.test_qprocessRunner()
        self.test_sceneRoundTrip()
        self.test_backendLoop()

    def test_environmentPlan(self):
        from SlicerTSKDLib.install.environment import EnvironmentOptions, findBackendSource, planInstall
        from SlicerTSKDLib.hostContext import HostContext
        from SlicerTSKDLib.install.pythonFinder import PythonInfo, candidatePythons
        from SlicerTSKDLib.install.torchSelection import chooseTorchBuild

        home = tempfile.mkdtemp(prefix="SlicerTSKDTest-")
        fakePython = os.path.join(home, "python3.11.exe" if sys.platform == "win32" else "python3.11")
        with open(fakePython, "w") as stream:
            stream.write("#!/bin/sh\n")
        os.chmod(fakePython, 0o755)
        options = EnvironmentOptions(rootDir=os.path.join(home, "tskd"), backendSourceDir=findBackendSource(os.path.dirname(__file__)) or "")
        self.assertTrue(options.backendSourceDir, "backend sources not installed next to the module")
        host = HostContext(sys.platform, {"PATH": home}, home, searchCommonLocations=False)
        self.assertEqual(candidatePythons(host)[0].command, (fakePython,))
        steps = planInstall(options, host, PythonInfo((fakePython,), "PATH", (3, 11, 7), fakePython), chooseTorchBuild(None, sys.platform))
        self.assertEqual(steps[0].command[:3], (fakePython, "-m", "venv"))

    def test_qprocessRunner(self):
        import shutil

        from SlicerTSKDLib.processRunner import EXITED, QProcessRunner

        runner, events = QProcessRunner(), []
        runner.finished.connect(lambda code, status: events.append((code, status, runner.readOutput())))
        runner.start([shutil.which("PythonSlicer") or sys.executable, "-c", "print('tskd-ok')"], slicer.util.startupEnvironment())
        deadline = time.time() + 60
        while not events and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.01)
        self.assertEqual(events[0][:2], (0, EXITED))
        self.assertIn("tskd-ok", events[0][2])

    def test_sceneRoundTrip(self):
        from SlicerTSKDLib.selfTest import checkSceneRoundTrip

        checkSceneRoundTrip(slicer.mrmlScene)

    def test_backendLoop(self):
        from SlicerTSKDLib.selfTest import runBackendLoop

        url = os.environ.get("SLICERTSKD_TEST_BACKEND_URL")
        if not url:
            logging.info("SLICERTSKD_TEST_BACKEND_URL is not set: the training loop is not tested")
            return
        wait = lambda seconds: [slicer.app.processEvents(), time.sleep(seconds)]  # noqa: E731
        score = runBackendLoop(slicer.mrmlScene, url, os.environ.get("SLICERTSKD_TEST_BACKEND_TOKEN"), os.path.dirname(__file__), wait=wait)
        self.assertGreaterEqual(score, 0.85)
