"use strict";
VM.init();
