"""DICOMweb (PS3.18): QIDO-RS, WADO-RS, STOW-RS and rendered resources under
``/dicom-web``; WADO-URI at ``/wado``. Thin doors onto the archive core."""
