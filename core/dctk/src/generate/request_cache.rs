//! Every generation request and its response, content addressed.
