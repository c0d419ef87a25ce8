// Live video on the camera page (filled in by the live-video work).
"use strict";
